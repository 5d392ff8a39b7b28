"""Named streams: pairing with the forget examples (aligned by uid, random with the seed), one batch per step
grouped by stream, and the errors that stop a run before training."""

from pathlib import Path

import pytest

from unlearning.data.examples import DataError, Example
from unlearning.data.streams import (
    ALIGNED,
    RANDOM,
    StreamCollator,
    StreamError,
    StreamSet,
    StreamUse,
    check_streams,
    merge_uses,
    validate_examples,
    with_modality,
)

FORGET = [Example(f"forget q{i}?", f"answer {i}.", uid=f"f{i}") for i in range(3)]
RETAIN = [Example(f"retain q{i}?", f"kept {i}.", uid=f"r{i}") for i in range(5)]
TWINS = [Example(f"forget q{i}?", f"harmless {i}.", uid=f"f{i}") for i in (2, 0, 1)]  # any order


def test_aligned_partners_follow_the_forget_example_and_random_ones_the_seed():
    uses = (StreamUse("forget"), StreamUse("retain", RANDOM), StreamUse("decoupled", ALIGNED))
    streams = {"forget": FORGET, "retain": RETAIN, "decoupled": TWINS}
    dataset = StreamSet(streams, uses, seed=3)
    items = [dataset[i] for i in (2, 0, 1)]
    assert [(f.uid, d.uid) for f, _, d in items] == [("f2", "f2"), ("f0", "f0"), ("f1", "f1")]
    again = StreamSet(streams, uses, seed=3)
    assert [again[i][1] for i in (2, 0, 1)] == [item[1] for item in items]  # seeded draws, in fetch order
    other = StreamSet(streams, uses, seed=4)
    assert [other[i][1].uid for i in range(3) for _ in range(4)] != [again[i][1].uid for i in range(3)
                                                                       for _ in range(4)]


def test_a_method_may_score_a_stream_without_the_forget_answers():
    refusals = [Example(f.question, "I cannot say.", uid=f.uid) for f in FORGET]
    dataset = StreamSet({"forget": FORGET, "refusal": refusals}, (StreamUse("refusal"),))
    assert [item[0].answer for item in (dataset[0], dataset[1])] == ["I cannot say."] * 2


def test_misaligned_streams_name_the_forget_example():
    with pytest.raises(DataError, match="stream 'decoupled' has no example aligned with forget example 'f0' \\(2 of 3"):
        StreamSet({"forget": FORGET, "decoupled": TWINS[:1]}, (StreamUse("decoupled"),), where="bench x")
    with pytest.raises(DataError, match="two examples for forget example 'f0'"):
        StreamSet({"forget": FORGET, "decoupled": [*TWINS, TWINS[1]]}, (StreamUse("decoupled"),))
    with pytest.raises(DataError, match="the forget set is empty"):
        StreamSet({"forget": []}, (StreamUse("forget"),))


def test_batches_group_rows_by_stream(collator):
    uses = (StreamUse("forget"), StreamUse("retain", RANDOM))
    dataset = StreamSet({"forget": FORGET, "retain": RETAIN}, uses)
    batch = StreamCollator(collator, uses)([dataset[0], dataset[1]])
    assert batch["streams"] == {"forget": (0, 2), "retain": (2, 4)}
    assert batch["labels"].shape[0] == 4


def test_unknown_and_missing_streams_name_method_and_benchmark():
    uses = (StreamUse("forget"), StreamUse("decoupled"))
    with pytest.raises(StreamError, match="method 'ga_pd' needs stream 'decoupled', which benchmark 'fiubench' "
                                          r"does not provide \(it provides forget, retain; 'decoupled' comes with "
                                          "safeeraser\\)"):
        check_streams("ga_pd", uses, "fiubench", ("forget", "retain"), {"decoupled": ["safeeraser"]})
    with pytest.raises(StreamError, match="method 'x' names unknown stream 'retian'.*Did you mean 'retain'"):
        check_streams("x", (StreamUse("retian", RANDOM),), "fiubench", ("forget", "retain"), {})
    with pytest.raises(StreamError, match="pairs stream 'retain' both random and aligned"):
        merge_uses([StreamUse("retain", RANDOM), StreamUse("retain", ALIGNED)], "m")
    with pytest.raises(ValueError, match="pairing must be one of"):
        StreamUse("retain", "shuffled")


def test_bad_examples_stop_before_training_naming_stream_and_example(collator):
    empty_context = Example("q?", "  ", uid="r9", context="It is")
    with pytest.raises(DataError, match="method 'ga', stream 'retain': example 'r9': empty answer"):
        validate_examples(collator, {"forget": FORGET, "retain": [empty_context]}, "benchmark 'b', method 'ga'")


def test_an_empty_answer_trains_the_end_of_the_turn(collator):
    """A release's empty model answer (SafeEraser's) is data: its span is what the template renders after the
    answer, the same tokens that end a non-empty answer's span."""
    validate_examples(collator, {"forget": [Example("q?", "", uid="e")]}, "benchmark 'b', method 'ga'")
    _, empty = collator.target_text(Example("q?", "", uid="e"))
    _, answered = collator.target_text(Example("q?", "Blue.", uid="a"))
    assert empty and answered[-len(empty):] == empty and set(empty) & collator.stop_ids


def test_unimodal_drops_images_only(fiu_dir: Path):
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    examples = [Example("q?", "a.", image, uid="1/0")]
    assert with_modality(examples, "multimodal") == examples
    assert with_modality(examples, "unimodal") == [Example("q?", "a.", None, uid="1/0")]
    with pytest.raises(ValueError, match="forget_modality must be one of"):
        with_modality(examples, "text")
