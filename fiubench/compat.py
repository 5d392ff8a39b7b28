"""FIUBench's original behaviours that change numbers (SaFoLab-WISC/FIUBench), each a switch ``compat=official``
turns on (``unlearning.compat``); the rows are docs/fidelity.md's FIUBench table."""

from unlearning.compat import KL_OVER_ALL_POSITIONS, PO_JOINT_MEAN, Switch, declare

SWITCHES = declare(
    "fiubench",
    Switch("original_prompt", "the original's hand-written prompt (its model_config.yaml tags; Llama-3.2 its chat "
           "template) and its label rule, no EOS; generation after its decoded prompt", ("1", "2", "4", "25"),
           ("train", "eval"),
           sets={"original_prompt": "${oc.select:benchmark.recipe.original_prompt,null}"}),
    Switch("capitalize", "questions and string answers str.capitalize()d", ("2",), ("train", "eval"),
           sets={"benchmark.options.capitalize": True}),
    Switch("cut_at_first_period", "generation metrics see a generation up to its first '.' ('' without one)",
           ("3",), ("eval",)),
    Switch("skip_first_answer_token", "the answer NLL over labels 2..L divided by L and Min-K over labels[1:] "
           "(the original's labels under its prompt, else the answer without EOS)", ("4",), ("eval",)),
    Switch("kl_over_all_positions", "KL averaged over every position of the retain batch", ("5",), ("train",),
           sets=KL_OVER_ALL_POSITIONS),
    Switch("po_joint_mean", "PO: one token mean over the concatenated refusal and retain batch", ("7",), ("train",),
           sets=PO_JOINT_MEAN),
    Switch("file_order", "Stage I and forget batches in file order", ("10",), ("train",), sets={"shuffle": False}),
    Switch("decay_on_norm_weights", "weight decay on every trainable parameter whose name does not hold 'bias'",
           ("10b",), ("train",), sets={"decay_exempt": "bias"}),
    Switch("cosine_sized_with_accumulation_4", "Stage I's schedule sized with finetune.yaml's accumulation 4 "
           "(DeepSpeed accumulated 16): the cosine ends near 0.85 x lr", ("24",), ("train",),
           sets={"schedule_accum": 4}),
    Switch("retain5", "the original eval.yaml's retain5 (unless retain_split= names another)", ("12",), ("eval",),
           sets={"benchmark.retain_split": "retain5"}),
    Switch("forget5", "forget5, the split of the paper's table (unless forget_split= names another)", ("22",),
           ("train", "eval"), sets={"benchmark.forget_split": "forget5"}),
    Switch("judge_as_original", "the judge prompt's original line layout; a reply's first-line number kept as it "
           "is, an unreadable reply 0.0", ("13", "14"), ("eval",)),
    Switch("short_answers_score_zero", "GPT 0 without asking for generations of 5 characters or fewer", ("14",),
           ("eval",)),
    Switch("min_k_without_renormalising", "Min-K terms that select no token dropped, the weights kept", ("16",),
           ("eval",)),
    Switch("fp16_evaluation", "models held in bf16 evaluated in fp16, as the original evaluated them", ("23",),
           ("eval",), sets={"eval.dtype": "float16"}, when={"model.dtype": ("bfloat16",)}),
)
