"""The collator: chat template, image tokens, and labels on answer tokens + EOS only."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from unlearning.data.collator import IGNORE_INDEX, ChatCollator
from unlearning.data.examples import DataError, Example, span_example
from unlearning.data.images import load_image


@pytest.fixture()
def examples(fiu_dir: Path) -> list[Example]:
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    return [
        Example("What is the job of the person?", "juno fairbanks works as a florist.", image, uid="a"),
        Example("Where does the person in the image live?", "juno lives in porto.", image, uid="b"),
    ]


def test_labels_cover_answer_and_eos_only(collator: ChatCollator, tiny_model, examples):
    batch = collator(examples)
    inputs, labels = batch["inputs"], batch["labels"]
    tokenizer = collator.tokenizer
    image_token = tiny_model.config.image_token_id
    for row, example in enumerate(examples):
        scored = labels[row][labels[row] != IGNORE_INDEX]
        assert tokenizer.decode(scored) == " " + example.answer + tokenizer.eos_token
        assert scored[-1].item() == tokenizer.eos_token_id
        # image, prompt (template + question) and padding positions carry -100
        assert torch.all(labels[row][inputs["input_ids"][row] == image_token] == IGNORE_INDEX)
        assert torch.all(labels[row][inputs["attention_mask"][row] == 0] == IGNORE_INDEX)
        first = (labels[row] != IGNORE_INDEX).nonzero()[0].item()
        prompt = tokenizer.decode(inputs["input_ids"][row][:first])
        assert prompt.endswith(example.question + " ASSISTANT:")
    assert (inputs["input_ids"] == image_token).sum(dim=1).tolist() == [4, 4]  # 56 px / patch 28
    assert "pixel_values" in inputs


def test_whole_sequence_labels_mask_padding_only(tiny_processor, tiny_model, examples):
    """MLLMU-Bench's original training labels (compat=official): input_ids with padding masked, so the template,
    the question and the image tokens are labels too."""
    collator = ChatCollator(tiny_processor, [tiny_processor.tokenizer.eos_token_id], label_scope="sequence")
    batch = collator(examples)
    ids, attention, labels = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"], batch["labels"]
    assert torch.equal(labels[attention == 1], ids[attention == 1])
    assert torch.all(labels[attention == 0] == IGNORE_INDEX) and (attention == 0).any()  # one row is padded
    assert (labels == tiny_model.config.image_token_id).sum() == 8  # 4 image tokens per row
    with pytest.raises(ValueError, match="label_scope must be one of"):
        ChatCollator(tiny_processor, [], label_scope="prompt")


def test_system_prompt_is_masked(tiny_processor, tiny_model, examples):
    collator = ChatCollator(tiny_processor, [tiny_processor.tokenizer.eos_token_id], system_prompt="Be brief.")
    batch = collator(examples[:1])
    ids, labels = batch["inputs"]["input_ids"][0], batch["labels"][0]
    text = collator.tokenizer.decode(ids[labels == IGNORE_INDEX])
    assert "Be brief." in text
    assert "Be brief." not in collator.tokenizer.decode(ids[labels != IGNORE_INDEX])


def test_generation_batch_is_left_padded_and_ends_with_the_prompt(collator, examples):
    batch = collator.generation_batch(examples)
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
    assert collator.tokenizer.decode(batch["input_ids"][0]).endswith("ASSISTANT:")
    assert collator.tokenizer.padding_side == "right"  # restored


def test_text_only_example_has_no_image_tokens(collator, tiny_model):
    batch = collator([Example("What is two plus two?", "four.", None, uid="t")])
    assert "pixel_values" not in batch["inputs"] or batch["inputs"]["pixel_values"] is None
    assert not (batch["inputs"]["input_ids"] == tiny_model.config.image_token_id).any()


def test_missing_and_corrupt_images_name_the_file(tmp_path: Path):
    with pytest.raises(DataError, match="not found: .*missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(broken)


def scored_text(collator: ChatCollator, batch: dict, row: int) -> str:
    labels = batch["labels"][row]
    return collator.tokenizer.decode(labels[labels != IGNORE_INDEX])


def test_a_span_after_a_context_is_scored_alone_and_ends_without_eos(collator: ChatCollator, examples):
    """EFUF's sub-sentence targets: the caption up to the span conditions it; no EOS inside a response."""
    caption = "the image shows a train on the tracks, with cars parked on the platform. a dog sleeps."
    start = caption.index(" with cars")
    end = caption.index(".") + 1
    inner = span_example("Please describe the image.", caption, start, end, final=False, where="pos_neg.json[0]",
                         image=examples[0].image, uid="c1")
    last = span_example("Please describe the image.", caption, end, len(caption), final=True, where="x", uid="c2")
    assert (inner.context, inner.answer) == (caption[:start], " with cars parked on the platform.")
    batch = collator([inner, last])
    eos = collator.tokenizer.eos_token
    assert scored_text(collator, batch, 0).strip() == "with cars parked on the platform."
    assert eos not in scored_text(collator, batch, 0)
    assert scored_text(collator, batch, 1).strip() == "a dog sleeps." + eos  # the span that ends the answer
    text, _ = collator.target_text(inner)
    assert text.endswith(caption[:end]) and "a dog" not in text  # nothing after the span is rendered


def test_span_outside_its_text_names_the_record():
    with pytest.raises(DataError, match=r"pos_neg.json record 7: span \[30, 90\) lies outside its text of 20"):
        span_example("q", "a caption of twenty.", 30, 90, final=False, where="pos_neg.json record 7")
    with pytest.raises(DataError, match="lies outside"):
        span_example("q", "text", 3, 3, final=True, where="x")  # empty


def test_example_weights_travel_with_the_batch(collator: ChatCollator, examples):
    assert "weights" not in collator(examples)  # every weight 1: no weighting at all
    weighted = [Example("q?", "a b.", uid="w1", weight=32.5), Example("q?", "c.", uid="w2")]
    assert collator(weighted)["weights"].tolist() == [32.5, 1.0]


def test_rgb_conversion(tmp_path: Path):
    path = tmp_path / "grey.png"
    Image.new("L", (8, 8), 128).save(path)
    assert load_image(path).mode == "RGB"


def test_shots_are_earlier_turns_with_their_images_and_never_scored(collator: ChatCollator, tiny_model, examples):
    """Few-shot demonstrations: user/assistant turns before the question; only the final answer is a label."""
    with_bytes = Example("Q3?", "c", (examples[0].image).read_bytes(), uid="bytes")  # a parquet release's image
    question = Example("Which one?", "B", examples[0].image, uid="q", shots=(examples[1], with_bytes,
                                                                              Example("Text only?", "A")))
    text = collator.prompt_text(question)
    assert text.index(examples[1].question) < text.index("Q3?") < text.index("Text only?") < text.index("Which one?")
    assert f"ASSISTANT: {examples[1].answer}" in text and "ASSISTANT: A" in text
    batch = collator([question])
    image_token = tiny_model.config.image_token_id
    assert (batch["inputs"]["input_ids"] == image_token).sum().item() == 3 * 4  # two shot images + the question's
    assert batch["inputs"]["pixel_values"].shape[0] == 3
    scored = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert collator.tokenizer.decode(scored) == " B" + collator.tokenizer.eos_token


def test_an_original_prompt_cut_at_max_length(collator: ChatCollator, examples):
    """SafeEraser's training text: the tags, the -2 label rule (no EOS) and truncation at max_length text tokens
    (the image placeholder unexpanded, as the original's tokenizer counted it)."""
    from unlearning.data.collator import OriginalPrompt

    tags = {"system_tag": "A chat. ", "question_start_tag": "USER: ", "answer_tag": " ASSISTANT: "}
    whole = ChatCollator(collator.processor, sorted(collator.stop_ids), original=OriginalPrompt(**tags))
    long = Example("What is the job of the person?", " ".join(["florist"] * 60), examples[0].image, uid="long")
    text, labels = whole.target_text(long)
    full = whole.encode_text(text)
    assert labels == full[-len(labels):] and labels[-1] not in collator.stop_ids  # no EOS label
    cut = ChatCollator(collator.processor, sorted(collator.stop_ids), original=OriginalPrompt(**tags, max_length=40))
    short_text, short_labels = cut.target_text(long)
    assert len(cut.encode_text(short_text)) <= 40 and text.startswith(short_text) and len(short_text) < len(text)
    assert short_labels == full[len(full) - len(labels):40]  # the same labels, up to the cut
    batch = cut([long, examples[1]])
    assert batch["labels"].shape[0] == 2
    _, empty = whole.target_text(Example("Q?", "", examples[0].image, uid="e"))
    assert len(empty) == 1  # an empty answer leaves the tag's last token as its only label, as the original
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        OriginalPrompt(**tags, max_length=1)


def test_no_eos_after_the_answer_as_mllmu_bench(collator: ChatCollator, examples):
    """MLLMU-Bench's LLaVA training text ends with the answer (data_preprocess.py:355): with append_eos=False no
    EOS is added after a turn the template ends without one; an empty answer still trains the EOS."""
    plain = ChatCollator(collator.processor, sorted(collator.stop_ids), append_eos=False)
    text, ids = plain.target_text(examples[0])
    with_eos_text, with_eos = collator.target_text(examples[0])
    assert with_eos[-1] == collator.tokenizer.eos_token_id and ids == with_eos[:-1]
    assert not text.endswith(collator.tokenizer.eos_token) and with_eos_text == text + collator.tokenizer.eos_token
    _, empty = plain.target_text(Example("Q?", "", examples[0].image, uid="e"))
    assert empty and empty[-1] == collator.tokenizer.eos_token_id
