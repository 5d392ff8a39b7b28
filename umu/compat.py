"""UMU-Bench's original behaviours that change numbers (QDRhhhh/UMU-bench), each a switch ``compat=official`` turns
on (``unlearning.compat``); the rows are docs/fidelity.md's UMU-Bench table (U*)."""

from unlearning.compat import Switch, declare

SWITCHES = declare(
    "umu",
    Switch("whole_sequence_labels", "labels = input_ids with padding masked: template, question, image and answer "
           "(unlearn_dataset.py:162-163)", ("U1",), ("train",), sets={"label_scope": "sequence"}),
    Switch("no_eos_after_answer", "no EOS taught after the answer (the LLaVA text ends with the answer, "
           "unlearn_dataset.py:145)", ("U1",), ("train",), sets={"append_eos": False}),
    Switch("lora_leaf_names", "LoRA targets q/k/v/o/gate/up/down_proj matched by leaf name, the CLIP tower's "
           "q/k/v_proj too (GA.py:135-142)", ("U2",), ("train",), sets={"lora_match": "leaf"}),
    Switch("npo_batch_mean", "NPO: one log-ratio per batch, of the batch-mean token NLLs (NPO.py:236-237)", ("U3",),
           ("train",), sets={"method.granularity": "batch_token_mean"}),
    Switch("retain_subsample", "retain pool: int(n(1-r)/r) QAs per modality drawn with seed 42 "
           "(unlearn_dataset.py:66-71)", ("U4",), ("train",), sets={"benchmark.options.retain_pool": "subsample"}),
    Switch("exact_option_match", "classification by a greedy answer compared exactly with the option's text on the "
           "forget and retain sets (eval.py:158-159), the nearest option on the real set (eval.py:160-161)",
           ("U5",), ("eval",), sets={"benchmark.eval_options.classification_scoring": "generate"}),
    Switch("multimodal_answer_from_unimodal", "a multimodal MCQ graded by its unimodal twin's answer letter "
           "(eval.py:142)", ("U6",), ("eval",)),
    Switch("cloze_answer_to_first_period", "the cloze ground truth cut at its first '.' (eval.py:352, :406)",
           ("U7",), ("eval",)),
    Switch("fp16_evaluation", "models held in bf16 evaluated in fp16 (eval.py:729)", ("U8",), ("eval",),
           sets={"eval.dtype": "float16"}, when={"model.dtype": ("bfloat16",)}),
)
