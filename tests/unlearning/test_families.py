"""Each supported model family, as a tiny offline model of the same architecture, through the real code path:
prompt construction and masking, one forget step through peft, and one evaluation."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import SMALL_MODEL
from unlearning.data.collator import IGNORE_INDEX, ChatCollator, stop_token_ids
from unlearning.data.examples import Example
from unlearning.models.loading import check_prefixes, load_model, load_processor
from unlearning.models.tiny import build_tiny_model
from unlearning.recipes.common import CONFIG_DIR, with_compat
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.forget import forget

# config name -> (tiny architecture, end-of-turn marker that closes every answer target)
FAMILIES = {
    "tiny": ("llava", "</s>"),  # LLaVA-1.5 / LLaVA-Phi-3 architecture
    "tiny_qwen2_vl": ("qwen2_vl", "<|im_end|>"),
    "tiny_idefics2": ("idefics2", "<end_of_utterance>"),
    "tiny_mllama": ("mllama", "<|eot_id|>"),  # Llama-3.2-Vision
}


def model_config(name: str, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("forget", overrides=[f"model={name}", *overrides]).model


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory, fiu_dir: Path) -> tuple[str, Path]:
    from fiubench.benchmark import FiuBenchTask

    name = request.param
    architecture = FAMILIES[name][0]
    sizes = SMALL_MODEL if architecture == "llava" else {"image_size": 56, "vocab_size": 600}
    path = tmp_path_factory.mktemp(name) / "model"
    return name, build_tiny_model(architecture, path, FiuBenchTask(fiu_dir).texts(), **sizes)


def test_prompt_masking_and_module_paths(family, fiu_dir: Path):
    name, path = family
    cfg = model_config(name)
    processor = load_processor(path, cfg.chat_template, cfg.processor_class, cfg.image_processor_overrides)
    model = load_model(path)
    check_prefixes(model, cfg.modules)
    collator = ChatCollator(processor, stop_token_ids(processor.tokenizer, model.generation_config))
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    batch = collator([Example("Who is this?", "juno fairbanks.", image, "a"), Example("Job?", "a florist.", None, "b")])
    for row, answer in enumerate(("juno fairbanks.", "a florist.")):
        labels = batch["labels"][row]
        target = collator.tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert target.strip() == answer + FAMILIES[name][1]
        assert collator.tokenizer.decode(batch["inputs"]["input_ids"][row]).count(collator.tokenizer.bos_token) == 1


def test_one_forget_step_and_one_evaluation(family, fiu_dir: Path, tmp_path: Path):
    name, path = family
    common = [f"model={name}", f"model.path={path}", f"data_dir={fiu_dir}", f"run_root={tmp_path}"]
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        forget_cfg = compose("forget", overrides=[*common, f"model_path={path}", "method=kl", "max_steps=1",
                                                  "batch_size=2", "lora.r=4", "lora.alpha=8"])
    run = forget(forget_cfg)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["retain_kl"] >= -1e-6  # 0 up to float noise (the reference sees retain rows only)
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        eval_cfg = compose("eval", overrides=[*common, f"run_dirs=[{run}]", f"reference_run={run}",
                                              "eval.general=null", "eval.max_new_tokens=4", "eval.batch_size=8"])
    (summary,) = evaluate(eval_cfg)  # the run is its own reference: forget quality 1
    assert summary["forget"]["n"] == 6 and summary["retain"]["n"] == 9 and summary["forget_quality"] == 1.0
    assert 0 <= summary["forget"]["rougeL_recall"] <= 1 and summary["forget"]["probability"] > 0


def test_phi3_template_from_the_model_config(tiny_dir: Path, tiny_model):
    """llava-phi-3-mini's processor may ship no template; the config's renders FIUBench's Phi-3 tags."""
    cfg = model_config("llava_phi3_mini")
    processor = load_processor(tiny_dir)
    processor.chat_template = cfg.chat_template
    collator = ChatCollator(processor, stop_token_ids(processor.tokenizer, tiny_model.generation_config))
    example = Example("What is the job of the person?", "a florist.", Path("unused.jpg"), "p")
    assert collator.prompt_text(example) == "<|user|>\n<image>\nWhat is the job of the person?<|end|>\n<|assistant|>\n"
    rendered, _ = collator.target_text(example)
    assert rendered.endswith("<|assistant|>\na florist.<|end|></s>")


@pytest.mark.parametrize(("real", "tiny"), [("llava_1_5_7b", "tiny"), ("llava_phi3_mini", "tiny"),
                                            ("qwen2_vl_7b", "tiny_qwen2_vl"), ("idefics2_8b", "tiny_idefics2"),
                                            ("llama32_vision_11b", "tiny_mllama")])
def test_real_configs_name_the_module_paths_their_tiny_twin_is_tested_with(real: str, tiny: str):
    assert model_config(real).modules == model_config(tiny).modules
    assert model_config(real).lora_targets == model_config(tiny).lora_targets


# The original's label rule on each family's tiny twin, read off its tokenizer by hand: labels start at token
# len(tokenize(instruction + answer_tag)) - 1. LLaVA-1.5's tag " ASSISTANT: " ends in a lone space token, whose place
# the answer's first word " juno" takes in the conversation: every answer token is a label. Llama-3.2's tag ends in
# "\n\n", two "\n" tokens here: the second is a label, a template token before the answer (as LLaVA-Phi-3's tag).
ORIGINAL_FIRST_LABEL = {"tiny": " juno", "tiny_mllama": "\n"}


def test_original_prompt_and_label_rule(family, fiu_dir: Path):
    """compat=official renders FIUBench's hand-written prompt (LLaVA) or chat template (Llama-3.2) and labels what
    its preprocess_v1 labelled: everything from one token before len(tokenize(instruction + answer_tag)), no EOS."""
    from unlearning.recipes.common import make_collator, to_dict

    name, path = family
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=[f"model={name}", "benchmark=fiubench", "compat=official"])
    with_compat(cfg, "train")  # the compat switches' values
    if name not in ORIGINAL_FIRST_LABEL:  # FIUBench had no such model: compat keeps this toolkit's rendering
        assert cfg.original_prompt is None
        return
    processor = load_processor(path, cfg.model.chat_template, cfg.model.processor_class,
                               cfg.model.image_processor_overrides)
    collator = make_collator(processor, None, None, original=to_dict(cfg.original_prompt))
    tokenizer = collator.tokenizer
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    example = Example("Who is this?", "juno fairbanks.", image, "a")
    conversation, target = collator.target_text(example)
    tag = cfg.original_prompt.answer_tag
    assert tag in conversation and conversation.rstrip().endswith("juno fairbanks." if name == "tiny" else "<|eot_id|>")
    instruction = conversation.split(tag)[0].strip(" ")
    first = len(tokenizer(instruction + tag)["input_ids"]) - 1
    assert target == tokenizer(conversation)["input_ids"][first:]
    assert tokenizer.decode(target[:1]) == ORIGINAL_FIRST_LABEL[name]
    assert tokenizer.eos_token_id not in target or name == "tiny_mllama"  # no EOS appended (the template's own only)
    batch = collator([example])
    labels = batch["labels"][0]
    assert labels[labels != IGNORE_INDEX].tolist() == target  # the image tokens expanded before, labels intact


def test_original_label_rule_with_phi3_tags(tiny_dir: Path, fiu_dir: Path):
    """LLaVA-Phi-3 (FIUBench's main model): its tags are special tokens that swallow the newline after them, so the
    rule's last instruction token is <|assistant|> itself, which becomes the first label. Checked on the tiny
    LLaVA's tokenizer given Phi-3's special tokens (rstrip, as Phi-3's tokenizer declares them)."""
    from tokenizers import AddedToken

    from unlearning.recipes.common import make_collator, to_dict

    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=["model=llava_phi3_mini", "benchmark=fiubench", "compat=official"])
    with_compat(cfg, "train")  # the compat switches' values
    processor = load_processor(tiny_dir)  # the LLaVA architecture carries LLaVA-Phi-3
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(tag, rstrip=True, special=True) for tag in ("<|user|>", "<|end|>", "<|assistant|>")]})
    collator = make_collator(processor, None, None, original=to_dict(cfg.original_prompt))
    example = Example("Who is this?", "juno fairbanks.", next((fiu_dir / "SFHQ").glob("*.jpg")), "a")
    conversation, target = collator.target_text(example)
    assert conversation.startswith("<|user|>\n<image>\nWho is this?<|end|>\n<|assistant|>\n")
    tokens = [collator.tokenizer.decode([token]) for token in target]
    assert tokens[0] == "<|assistant|>" and "".join(tokens[1:]).strip() == "juno fairbanks."  # L + 1 labels


def _original_generation_ids(tokenizer, input_ids: list[int], answer_tag: str) -> list[int]:
    """FIUBench's run_generation (evaluate_util.py:682-713) on one row, as written there: the scored ids decoded,
    cut before the answer tag without its newlines, spaces stripped, the tag appended, encoded with special tokens."""
    input_string = tokenizer.batch_decode([input_ids])[0]
    tag = answer_tag.replace("\n", "")
    prompt = input_string.split(tag)[0].strip(" ") + tag
    return tokenizer([prompt], add_special_tokens=True)["input_ids"][0]  # batch_encode_plus, gone in transformers 5


def test_original_generation_prompt_is_decoded_and_encoded_again(family, fiu_dir: Path):
    """compat=official generates after the prompt FIUBench rebuilt from the scored conversation: a second BOS, and
    Llama-3.2's prompt ending at <|end_header_id|> (its "\n\n" cut with the tag's newlines); the image expands as
    in any prompt."""
    from unlearning.recipes.common import make_collator, to_dict

    name, path = family
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("eval", overrides=[f"model={name}", "benchmark=fiubench", "compat=official"])
    with_compat(cfg, "eval")
    if name not in ORIGINAL_FIRST_LABEL:
        return
    processor = load_processor(path, cfg.model.chat_template, cfg.model.processor_class,
                               cfg.model.image_processor_overrides)
    collator = make_collator(processor, None, None, original=to_dict(cfg.original_prompt))
    tokenizer = collator.tokenizer
    example = Example("Who is this?", "Juno fairbanks.", next((fiu_dir / "SFHQ").glob("*.jpg")), "a")
    conversation, _ = collator.target_text(example)
    expected = _original_generation_ids(tokenizer, collator.encode_text(conversation), cfg.original_prompt.answer_tag)
    text = collator.generation_text(example)
    assert collator.encode_text(text) == expected
    assert expected[:2] == [tokenizer.bos_token_id] * 2 and expected.count(tokenizer.bos_token_id) == 2
    ending = "<|start_header_id|>assistant<|end_header_id|>" if name == "tiny_mllama" else " ASSISTANT: "
    assert tokenizer.decode(expected).endswith(ending)
    assert collator.encode_text(collator.prompt_text(example)) != expected  # what the default generates after
    batch = collator.generation_batch([example])
    assert batch["input_ids"][0, -5:].tolist() == expected[-5:]
    assert collator.prompt_length(example) == batch["input_ids"].shape[1]


def test_compat_nll_on_phi3_tags_is_the_originals(tiny_dir: Path, fiu_dir: Path):
    """The answer NLL under compat on LLaVA-Phi-3's tags (its first label is <|assistant|>) equals FIUBench's code
    run on the same batch (evaluate_util.py:395-405: get_batch_loss over the last L positions, labels 2..L, / L),
    through this toolkit's scoring path; its generation prompt ends with <|assistant|>, the tag's newlines gone."""
    import torch.nn.functional as F
    from tokenizers import AddedToken

    from fiubench import metrics
    from unlearning.inference.answers import score_answers
    from unlearning.recipes.common import make_collator, to_dict

    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("eval", overrides=["model=llava_phi3_mini", "benchmark=fiubench", "compat=official"])
    with_compat(cfg, "eval")
    processor = load_processor(tiny_dir)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(tag, rstrip=True, special=True) for tag in ("<|user|>", "<|end|>", "<|assistant|>")]})
    model = load_model(tiny_dir).eval()
    model.resize_token_embeddings(len(processor.tokenizer))
    collator = make_collator(processor, model.generation_config, None, original=to_dict(cfg.original_prompt))
    example = Example("Who is this?", "Juno fairbanks, a florist.", next((fiu_dir / "SFHQ").glob("*.jpg")), "a")
    (score,) = score_answers(model, collator, [example], batch_size=1)
    ours = metrics.answer_nll(score, skip_first_answer_token=True, ends_with_eos=False)

    batch = collator([example])
    with torch.no_grad():
        logits = model(**batch["inputs"]).logits.float()
    labels = batch["labels"]
    labels = labels[labels != IGNORE_INDEX].unsqueeze(0)
    logits = logits[:, -labels.shape[1]:, :]
    gt_loss = F.cross_entropy(logits[..., :-1, :].transpose(-1, -2), labels[..., 1:], reduction="none").sum(-1)
    theirs = (gt_loss / (batch["labels"] != IGNORE_INDEX).sum(-1)).item()
    assert collator.tokenizer.decode(labels[0, :1]) == "<|assistant|>"
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert ours != pytest.approx(score.mean_nll, rel=1e-3)  # the default's mean over every label differs
    assert collator.tokenizer.decode(collator.encode_text(collator.generation_text(example))).endswith(
        "Who is this?<|end|><|assistant|>")


def test_compat_scores_tokens_two_to_l_where_the_original_had_no_rule(family, fiu_dir: Path):
    """Qwen2-VL and Idefics2 (and any model without an original prompt): compat scores answer tokens 2..L of this
    toolkit's prompt, the end-of-turn left out, and divides by L."""
    from fiubench import metrics
    from unlearning.inference.answers import score_answers

    model, collator = _model_and_collator(family)
    example = Example("Who is this?", "juno fairbanks.", next((fiu_dir / "SFHQ").glob("*.jpg")), "a")
    (score,) = score_answers(model, collator, [example], batch_size=1)
    logprobs = score.token_logprobs
    length = len(logprobs) - 1  # the answer's tokens, without the end of turn
    assert metrics.answer_nll(score, skip_first_answer_token=True) == pytest.approx(-sum(logprobs[1:length]) / length)
    assert metrics.answer_nll(score) == pytest.approx(-sum(logprobs) / len(logprobs))


def test_prompt_length_without_processing_images_again(family, fiu_dir: Path):
    """The few-shot fit counts prompt tokens from the text and one measured expansion per image: the same count as
    running the processor on the whole prompt, with and without demonstrations, each family."""
    name, path = family
    cfg = model_config(name)
    processor = load_processor(path, cfg.chat_template, cfg.processor_class, cfg.image_processor_overrides)
    collator = ChatCollator(processor, [processor.tokenizer.eos_token_id])
    images = sorted((fiu_dir / "SFHQ").glob("*.jpg"))[:2]
    shot = Example("Who is this?", "juno fairbanks.", images[0], "s1")
    text_shot = Example("Job?", "a florist.", None, "s2")
    examples = [Example("Who is this?", "?", images[1], "a"), Example("Job?", "?", None, "b"),
                Example("Who is this?", "?", images[1], "c", shots=(shot, text_shot, shot))]
    for example in examples:
        expected = collator.generation_batch([example])["input_ids"].shape[1]
        assert collator.prompt_length(example) == expected, example.uid
    assert len(collator._expansions) == 2  # each image processed once for its count


def _model_and_collator(family: tuple[str, Path]) -> tuple:
    """The family's tiny model (eval mode) and a collator with its processor and stop tokens."""
    name, path = family
    cfg = model_config(name)
    processor = load_processor(path, cfg.chat_template, cfg.processor_class, cfg.image_processor_overrides)
    model = load_model(path).eval()
    return model, ChatCollator(processor, stop_token_ids(processor.tokenizer, model.generation_config))


def _scoring_examples(fiu_dir: Path) -> list[Example]:
    """A question's candidates (shared prompt, answers of different lengths), a second image's question, a text-only
    question's two candidates, and a lone question: the groups a benchmark's scoring pass holds."""
    images = sorted((fiu_dir / "SFHQ").glob("*.jpg"))[:2]
    answers = ["juno fairbanks.", "juno fairbanks, a florist from the north of the city.", "no.", "ada",
               "it is somebody else entirely"]
    examples = [Example("Who is this?", answer, images[0], f"a{i}") for i, answer in enumerate(answers)]
    examples += [Example("Where does this person live?", a, images[1], f"b{i}") for i, a in enumerate(["oslo.", "x"])]
    examples += [Example("Job?", a, None, f"c{i}") for i, a in enumerate(["a florist.", "a baker of bread."])]
    return [*examples, Example("Who is this?", "a lone answer.", images[1], "d")]


def test_shared_prefix_scores_equal_the_plain_path(family, fiu_dir: Path):
    """Issue 13: the candidates of a question scored on one computed prefix give the plain path's log-probabilities,
    Min-K++ statistics and token counts to 1e-5, on every family, whatever the chunking of the candidates."""
    from unlearning.inference.shared_prefix import unsupported_reason

    model, collator = _model_and_collator(family)
    assert unsupported_reason(model, collator) is None
    _assert_shared_equals_plain(model, collator, _scoring_examples(fiu_dir))


def _assert_shared_equals_plain(model, collator: ChatCollator, examples: list[Example]) -> None:
    from unlearning.inference.answers import score_answers
    from unlearning.inference.shared_prefix import SharedPrefix

    SharedPrefix(model, collator).answer_logits(examples[:5], 2)  # the first question's group: no fallback
    plain = score_answers(model, collator, examples, batch_size=4, shared_prefix=False)
    for batch_size in (2, 8):
        shared = score_answers(model, collator, examples, batch_size=batch_size)
        for example, ours, theirs in zip(examples, shared, plain, strict=True):
            assert ours.n_tokens == theirs.n_tokens, example.uid
            for field in ("token_logprobs", "token_mu", "token_sigma"):
                assert getattr(ours, field) == pytest.approx(getattr(theirs, field), abs=1e-5), (example.uid, field)


def test_shared_prefix_choice_logprobs_equal_the_plain_path(family, fiu_dir: Path):
    """Single-token choices (MLLMU-Bench's option letters) read on shared prefixes: the plain path's values."""
    from unlearning.inference.answers import choice_token_logprobs

    model, collator = _model_and_collator(family)
    examples = _scoring_examples(fiu_dir)
    candidates = [5, 17, 42]
    plain = choice_token_logprobs(model, collator, examples, candidates, 1, 4, shared_prefix=False)
    shared = choice_token_logprobs(model, collator, examples, candidates, 1, 3)
    for example, ours, theirs in zip(examples, shared, plain, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5), example.uid


def test_shared_prefix_with_the_original_prompt(family, fiu_dir: Path):
    """compat=official's label rule can make a prompt token the first label (Llama-3.2's tag newline): the shared
    prefix then stops before it, and the scores still equal the plain path's."""
    from unlearning.recipes.common import make_collator, to_dict

    name, path = family
    if name not in ORIGINAL_FIRST_LABEL:
        pytest.skip("FIUBench has no original prompt for this family")
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=[f"model={name}", "benchmark=fiubench", "compat=official"])
    with_compat(cfg, "train")  # the compat switches' values
    processor = load_processor(path, cfg.model.chat_template, cfg.model.processor_class,
                               cfg.model.image_processor_overrides)
    model = load_model(path)
    model.eval()
    collator = make_collator(processor, None, None, original=to_dict(cfg.original_prompt))
    examples = [ex for ex in _scoring_examples(fiu_dir) if ex.image is not None]
    _assert_shared_equals_plain(model, collator, examples)


def test_shared_prefix_generation_equals_the_plain_path(family, fiu_dir: Path):
    """Issue 13: greedy answers generated on one computed prefix per image (prompts of different lengths, several
    chunks; a prompt alone with its image; two equal text-only prompts, which share no image prefix) are the plain
    path's, on every family."""
    from unlearning.inference.answers import generate_answers
    from unlearning.inference.decoding import Decoding
    from unlearning.inference.prefix_generation import PrefixGeneration

    model, collator = _model_and_collator(family)
    images = sorted((fiu_dir / "SFHQ").glob("*.jpg"))[:3]
    questions = ["Who is this?", "What is the name of the person in this picture, please?", "Job?",
                 "Where does this person live and where did they grow up?", "Age?"]
    examples = [Example(q, "?", images[i % 2], f"{i}-{q}") for i in range(2) for q in questions]
    examples += [Example("Job?", "?", None, "text"), Example("Age?", "?", None, "text-a"),
                 Example("Age?", "?", None, "text-b"), Example("Age?", "?", images[2], "alone")]
    groups = [examples[:5], examples[5:10]]  # two images, one batch of prompts from both: no fallback
    two = Decoding(max_new_tokens=2).bind(model, collator.stop_ids, collator.tokenizer.pad_token_id)
    assert None not in PrefixGeneration(model, collator).generate(groups, 8, two)
    decoding = Decoding(max_new_tokens=12)
    plain = generate_answers(model, collator, examples, 4, decoding, shared_prefix=False)
    for batch_size in (2, 8):
        assert generate_answers(model, collator, examples, batch_size, decoding) == plain


def _answers_one_by_one(model, collator: ChatCollator, examples: list[Example], settings: dict) -> list[list[int]]:
    """Each prompt's new tokens from ``generate`` alone (batch 1, no padding): what any batching must give."""
    from unlearning.inference.scoring import prepare_inputs

    answers = []
    for example in examples:
        inputs = prepare_inputs(model, collator.generation_batch([example]))
        answers.append(model.generate(**inputs, **settings)[0, inputs["input_ids"].shape[1]:].tolist())
    return answers


def _stops_spreading_lengths(answers: list[list[int]]) -> list[int]:
    """One or two tokens which, as stop tokens, end the answers after the most different numbers of tokens."""
    import itertools

    def lengths(stops: tuple[int, ...]) -> int:
        return len({next((step + 1 for step, token in enumerate(a) if token in stops), len(a)) for a in answers})

    tokens = sorted({token for answer in answers for token in answer})
    return list(max([(t,) for t in tokens] + list(itertools.combinations(tokens, 2)), key=lengths))


def test_refilled_slots_equal_one_prompt_at_a_time(family, fiu_dir: Path, monkeypatch):
    """Issue 13: greedy generation in slots refilled as rows stop (answers of different lengths, more prompts than
    slots, the cache compacted, a repetition penalty) gives each prompt the tokens ``generate`` gives it alone, on
    every family; a generation config that changes the argmax otherwise (an n-gram ban) sends it to fixed batches."""
    from unlearning.inference import slot_decoding
    from unlearning.inference.decoding import Decoding
    from unlearning.inference.prefix_generation import PrefixGeneration

    model, collator = _model_and_collator(family)
    images = sorted((fiu_dir / "SFHQ").glob("*.jpg"))[:3]
    questions = ["Who is this?", "What is the name of the person in this picture, please?", "Job?",
                 "Where does this person live and where did they grow up?", "Age?"]
    examples = [Example(q, "?", images[i], f"{i}-{q}") for i in range(3) for q in questions]
    groups = [examples[:5], examples[5:10], examples[10:]]
    def bound(stops: list[int]):  # the model's generation config is read when a decoding is bound
        return Decoding(max_new_tokens=10).bind(model, stops, collator.tokenizer.pad_token_id)

    unstopped = _answers_one_by_one(model, collator, examples, bound([]).kwargs)
    stops = _stops_spreading_lengths(unstopped)
    expected = _answers_one_by_one(model, collator, examples, bound(stops).kwargs)
    assert len({len(answer) for answer in expected}) >= 3  # rows stop at different steps

    decoders, refills, row_steps, compactions = [], [], [], []  # what the decoder did, seen from outside
    spies = {"run": lambda self, original, prompts: decoders.append(self) or original(self, prompts),
             "_fill": lambda self, original, slots, *args: refills.append(len(slots)) or original(self, slots, *args),
             "_step": lambda self, original: row_steps.append(len(self.owner)) or original(self),
             "_compact": lambda self, original: compactions.append(1) or original(self)}
    for name, spy in spies.items():
        original = getattr(slot_decoding.SlotDecoder, name)
        monkeypatch.setattr(slot_decoding.SlotDecoder, name,
                            lambda self, *args, spy=spy, original=original: spy(self, original, *args))
    for slots in (2, 4):
        refills.clear(), row_steps.clear()
        generated = PrefixGeneration(model, collator).generate(groups, slots, bound(stops))
        assert [tokens.tolist() for group in generated for tokens in group] == expected
        assert sum(refills) == len(examples)
    assert sum(row_steps) == sum(len(answer) for answer in expected)  # no step for a finished row

    # every answer runs to the limit: 75 steps in 2 slots, past the cache's end
    generated = PrefixGeneration(model, collator).generate(groups, 2, bound([]))
    assert [tokens.tolist() for group in generated for tokens in group] == unstopped
    assert compactions

    model.generation_config.repetition_penalty = 1.3  # applied in the slots as generate applies it
    assert slot_decoding.logit_changes(bound([]).config) == []
    count = len(decoders)
    generated = PrefixGeneration(model, collator).generate(groups, 4, bound([]))
    assert len(decoders) == count + 1
    penalised = _answers_one_by_one(model, collator, examples, bound([]).kwargs)
    assert [tokens.tolist() for group in generated for tokens in group] == penalised != unstopped

    model.generation_config.no_repeat_ngram_size = 2  # not applied in slots: fixed batches with generate
    assert slot_decoding.logit_changes(bound([]).config) == ["no_repeat_ngram_size=2"]
    generated = PrefixGeneration(model, collator).generate(groups, 4, bound([]))
    assert len(decoders) == count + 1
    assert [tokens.tolist() for group in generated for tokens in group] == _answers_one_by_one(
        model, collator, examples, bound([]).kwargs)


def test_cached_pixels_equal_the_image_processor(family, fiu_dir: Path, tmp_path: Path):
    """Issue 13: a collator processes each example's images once and joins the remembered outputs into a batch
    equal to the processor's own output, tensor for tensor, on every family: examples with one image, two images
    (a demonstration's and their own), none, a wide image (other tiles or padded pixels); scoring and generation
    batches; a second pass served from memory; budget 0 processes every time."""
    from PIL import Image

    from unlearning.data.pixel_cache import CachedImageProcessor

    name, path = family
    cfg = model_config(name)
    processor = load_processor(path, cfg.chat_template, cfg.processor_class, cfg.image_processor_overrides)
    faces = sorted((fiu_dir / "SFHQ").glob("*.jpg"))[:2]
    wide = tmp_path / "wide.png"
    Image.new("RGB", (84, 30), (200, 40, 90)).save(wide)
    shot = Example("Who is this?", "juno fairbanks.", faces[1], "shot")
    examples = [Example("Who is this?", "juno fairbanks.", faces[0], "a"), Example("Job?", "a florist.", None, "b"),
                Example("Who is this?", "ada.", faces[0], "c", shots=(shot,)),
                Example("What is shown?", "a wide picture.", wide, "d")]
    cached = ChatCollator(processor, [processor.tokenizer.eos_token_id])
    plain = ChatCollator(processor, [processor.tokenizer.eos_token_id], pixel_cache=CachedImageProcessor(0))
    for batch in (examples, examples[1:], examples[::-1], examples[:1]):
        for build in ("__call__", "generation_batch"):
            want = getattr(plain, build)(batch)
            for _ in range(2):
                got = getattr(cached, build)(batch)
                want_inputs, got_inputs = want.get("inputs", want), got.get("inputs", got)
                assert sorted(got_inputs) == sorted(want_inputs)
                for key, value in want_inputs.items():
                    assert torch.equal(got_inputs[key], value), (name, build, key)
    assert cached._pixels.misses == 3 and cached._pixels.hits > 3  # face a, shot + face a, the wide image
    assert plain._pixels.hits == plain._pixels.misses == 0
    assert type(processor.image_processor).__name__ != "CachedImageProcessor"  # the processor is left as it was
