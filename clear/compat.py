"""CLEAR's original behaviours that change numbers (somvy/multimodal_unlearning, mm/eval.py and
mm/calculate_metrics.py), each a switch ``compat=official`` turns on (``unlearning.compat``); the rows are
docs/fidelity.md's CLEAR table."""

from unlearning.compat import Switch, declare

SWITCHES = declare(
    "clear",
    Switch("first_300_rows", "each task evaluated on its first 300 rows only (eval.yaml ds_size: 300; real_world "
           "has 367, forget10_perturbed 378, retain_perturbed 395)", ("C1",), ("eval",)),
    Switch("pooled_perturbed_loss", "truth ratio (and forget quality, JS) against the perturbed NLL averaged over "
           "every row of the task, not the row's own perturbed answers", ("C2",), ("eval",)),
    Switch("generation_without_image", "answers generated from the question alone: the original decoded the "
           "prompt with skip_special_tokens, which drops the image tokens, and generated without pixel values",
           ("C3",), ("eval",)),
)
