"""EFUF's original behaviours that change numbers (starreeze/efuf), each a switch ``compat=official`` turns on
(``unlearning.compat``); the rows are docs/fidelity.md's EFUF table (E*)."""

from unlearning.compat import Switch, declare

SWITCHES = declare(
    "efuf",
    Switch("character_bleu", "BLEU over characters of the captions file's text against the image's last caption, "
           "four-element weights, smoothing method 7", ("E7",), ("eval",)),
    Switch("gold_as_original", "gold data: text-only records and records whose image is missing skipped among the "
           "first gold_size", ("E18",), ("train",), sets={"benchmark.options.gold_skip_unusable": True}),
    Switch("clip_windows_as_original", "CLIP windows started at every 48-px patch with room for four, cropped "
           "short at the image's edge", ("E19",), ("curate",),
           sets={"benchmark.curation.windows.partial_edges": True}),
    Switch("chair_as_original", "CHAIR read as eval_auto.py reads captions: nltk words, WordNet noun lemmas, its "
           "double words", ("E1",), ("eval",)),
    Switch("beam_search_captions", "captions decoded by beam search with 5 beams and length penalty 0", ("E9",),
           ("eval",)),
    Switch("fp16_evaluation", "models held in bf16 evaluated in fp16, as the original evaluated them", ("E20",),
           ("eval",), sets={"eval.dtype": "float16"}, when={"model.dtype": ("bfloat16",)}),
)
