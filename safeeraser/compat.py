"""SafeEraser's original behaviours that change numbers (yuu250/SafeEraser), each a switch ``compat=official``
turns on (``unlearning.compat``); the rows are docs/fidelity.md's SafeEraser table (S*)."""

from unlearning.compat import KL_OVER_ALL_POSITIONS, PO_JOINT_MEAN, Switch, declare

SWITCHES = declare(
    "safeeraser",
    Switch("original_prompt", "training text as data_module.py wrote it: model_config.yaml's llava-v1.5-vicuna tags "
           "(\"curious human\"), the -2 label rule without EOS, cut at 512 tokens", ("S5",), ("train",),
           sets={"original_prompt": "${oc.select:benchmark.recipe.original_prompt,null}"}),
    Switch("capitalize", "training questions and answers str.capitalize()d", ("S5",), ("train",),
           sets={"benchmark.options.capitalize": True}),
    Switch("file_order", "forget batches in file order (DataLoader shuffle=False)", ("S15",), ("train",),
           sets={"shuffle": False}),
    Switch("pd_weights_as_original", "Prompt Decouple weight 0.5 in ga_pd and gd_pd (1.0 in kl_pd and po_pd), and "
           "gd_pd's retain weight halved to 0.5", ("S2",), ("train",),
           sets={"method.params.pd_weight": 0.5, "method.params.retain_weight": 0.5},
           when={"method.name": ("ga_pd", "gd_pd")}),
    Switch("po_joint_mean", "PO: one token mean over the concatenated refusal and retain batch", ("S4",), ("train",),
           sets=PO_JOINT_MEAN),
    Switch("kl_over_all_positions", "KL averaged over every position of the retain batch", ("S4",), ("train",),
           sets=KL_OVER_ALL_POSITIONS),
    Switch("sampled_answers", "answers sampled (temperature 1.0, top-p 0.9): three per harmful question, one per "
           "SD and harmless question; seeded here", ("S6",), ("eval",)),
    Switch("substring_judge_parse", "judge replies read by substring, failed and unreadable ones in every "
           "denominator", ("S7",), ("eval",)),
    Switch("judge_request_as_original", "judge requests as eval_all.py sent them: no temperature, no token cap; "
           "the unsafe prompts with its few-shot shape (two unsafe examples, then a safe one)", ("S11",), ("eval",),
           sets={"benchmark.judge.temperature": None, "benchmark.judge.max_tokens": None}),
    Switch("swapped_score_roles", "GPT-Eval of harmless answers with the roles swapped; an unparseable score 0.0",
           ("S8",), ("eval",)),
    Switch("skip_empty_answers", "empty answers left out of ASR, RR, SARR, ROUGE-L and the judge score", ("S14",),
           ("eval",)),
    Switch("swapped_rouge_roles", "ROUGE-L called with the roles swapped (precision; the same number)", ("S9",),
           ("eval",)),
    Switch("fp16_evaluation", "models held in bf16 evaluated in fp16, as the original evaluated them", ("S17",),
           ("eval",), sets={"eval.dtype": "float16"}, when={"model.dtype": ("bfloat16",)}),
)
