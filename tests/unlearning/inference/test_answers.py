"""Generation with a decoding setting: greedy by default, seeded sampling with n answers per prompt."""

from pathlib import Path

import pytest

from unlearning.data.examples import Example
from unlearning.inference.answers import generate_answers, generate_samples
from unlearning.inference.decoding import Decoding


@pytest.fixture()
def questions(fiu_dir: Path) -> list[Example]:
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    return [Example(f"What is the job of person {i}?", "unused", image, uid=f"q{i}") for i in range(3)]


def test_greedy_is_the_default_and_one_answer_per_question(tiny_model, collator, questions):
    greedy = generate_answers(tiny_model, collator, questions, 2, 6)
    assert greedy == generate_answers(tiny_model, collator, questions, 2, Decoding(max_new_tokens=6))
    assert [samples[0] for samples in generate_samples(tiny_model, collator, questions, 3, Decoding(6))] == greedy


def test_seeded_sampling_gives_n_answers_that_repeat(tiny_model, collator, questions):
    sampling = Decoding(max_new_tokens=8, sample=True, temperature=1.5, n=3, seed=7)
    first = generate_samples(tiny_model, collator, questions, 2, sampling)
    assert [len(samples) for samples in first] == [3, 3, 3]
    assert generate_samples(tiny_model, collator, questions, 2, sampling) == first  # the same seed, the same text
    assert len({text for samples in first for text in samples}) > 3  # a random model samples varied text
    other = generate_samples(tiny_model, collator, questions, 2, Decoding(8, sample=True, temperature=1.5, n=3,
                                                                          seed=8))
    assert other != first
    with pytest.raises(ValueError, match="gives one answer per question"):
        generate_answers(tiny_model, collator, questions, 2, sampling)


def test_beam_search_settings_reach_generate(tiny_model, collator, questions, monkeypatch):
    seen = []
    generate = tiny_model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "generate", spy)
    beams = generate_answers(tiny_model, collator, questions, 3, Decoding(6, num_beams=5, length_penalty=0.0))
    assert len(beams) == 3 and seen and all(k["num_beams"] == 5 and k["length_penalty"] == 0.0 for k in seen)
    seen.clear()
    generate_answers(tiny_model, collator, questions, 3, Decoding(6, num_beams=5))
    assert seen and all("length_penalty" not in k for k in seen)  # the model's own (transformers' 1.0)


def test_bad_decoding_settings_are_refused():
    for kwargs, message in (({"max_new_tokens": 0}, "max_new_tokens must be positive"),
                            ({"max_new_tokens": 4, "n": 2}, "n must be 1 for greedy"),
                            ({"max_new_tokens": 4, "sample": True, "top_p": 0.0}, "0 < top_p <= 1"),
                            ({"max_new_tokens": 4, "length_penalty": 0.0}, "beam search only")):
        with pytest.raises(ValueError, match=message):
            Decoding(**kwargs)


def test_batches_prepared_in_the_background_keep_order_and_errors():
    """Issue 13: collation runs in a background thread while the model works on the batch before; results stay in
    input order (with a length order too) and a bad record's error reaches the caller."""
    import threading

    from unlearning.data.examples import DataError
    from unlearning.inference.answers import _sharded

    threads = set()

    def prepare(batch: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        if 13 in batch:
            raise DataError("record 13: image not found")
        return [x * 10 for x in batch]

    def run(batch: list[int], prepared: list[int]) -> list[int]:
        assert prepared == [x * 10 for x in batch]
        return [p + 1 for p in prepared]

    items = [5, 3, 8, 1, 9, 2, 7]
    assert _sharded(items, 3, None, "t", run, order=lambda x: -x, prepare=prepare) == [x * 10 + 1 for x in items]
    assert threading.current_thread().name not in threads
    with pytest.raises(DataError, match="record 13"):
        _sharded([1, 2, 13, 4], 2, None, "t", run, prepare=prepare)
