"""MLLMU-Bench's original behaviours that change numbers (franciscoliu/MLLMU-Bench), each a switch
``compat=official`` turns on (``unlearning.compat``); the rows are docs/fidelity.md's MLLMU-Bench table (M*)."""

from unlearning.compat import Switch, declare

SWITCHES = declare(
    "mllmu",
    Switch("whole_sequence_labels", "labels = input_ids with padding masked: template, question, image and answer",
           ("M1",), ("train",), sets={"label_scope": "sequence"}),
    Switch("no_eos_after_answer", "no EOS taught after the answer (data_preprocess.py's LLaVA text ends with the "
           "answer)", ("M1",), ("train",), sets={"append_eos": False}),
    Switch("sequential_passes", "GD and KL: every forget batch, then every retain batch, per epoch", ("M2",),
           ("train",), sets={"passes": "sequential"}),
    Switch("kl_min", "KL_Min: KL summed over every position per row, plus CE(retain)", ("M3",), ("train",),
           sets={"method.reduction": "all_positions_per_row", "method.retain_nll": 1.0}),
    Switch("npo_batch_mean", "NPO: one log-ratio per batch, of the batch-mean token NLLs", ("M4",), ("train",),
           sets={"method.granularity": "batch_token_mean"}),
    Switch("lora_leaf_names", "LoRA targets matched by leaf name everywhere (the vision tower too)", ("M5",),
           ("train",), sets={"lora_match": "leaf"}),
    Switch("idefics2_eval_image_splitting", "Idefics2 evaluated with image splitting on, as the hub processor "
           "eval.py loaded (training keeps it off, as finetune.py did)", ("M15",), ("eval",),
           sets={"model.image_processor_overrides.do_image_splitting": True},
           when={"model.name": ("idefics2_8b",)}),
    Switch("few_shot_from_evaluated_set", "few-shot profiles drawn once per set and task from the evaluated "
           "profiles, which are left unscored", ("M8",), ("eval",)),
    Switch("zero_shot_celebrity_classification", "celebrity MCQs asked without demonstrations", ("M8",), ("eval",)),
    Switch("classification_by_generation", "MCQs answered by a greedy generation, never by likelihood", ("M10",),
           ("eval",)),
    Switch("first_character_choice", "the chosen option is the answer's first character", ("M10",), ("eval",)),
    Switch("original_factuality_parse", "the factuality reply's text after its last ':' read as an int", ("M11",),
           ("eval",)),
    Switch("factuality_drops_unscored", "failed and unparseable factuality judgments left out of the mean",
           ("M11",), ("eval",)),
    Switch("judge_default_temperature", "no temperature sent to the judge (the API's default, 1.0)", ("M11",),
           ("eval",), sets={"benchmark.judge.temperature": None}),
    Switch("factuality_over_both_modalities", "one factuality mean per set over both modalities", ("M14",),
           ("eval",)),
    Switch("fp16_evaluation", "models held in bf16 evaluated in fp16, as the original evaluated them", ("M16",),
           ("eval",), sets={"eval.dtype": "float16"}, when={"model.dtype": ("bfloat16",)}),
)
