"""MLLMU-Bench's evaluation on the small model: letter scoring, few-shot draws, context fitting, the four sets."""

import dataclasses
import json
from pathlib import Path

import pytest

from mllmu import evaluate
from mllmu.data import MllmuBench
from tests.fake_openai import FakeOpenAI, fake_openai_server
from unlearning.compat import Compat
from unlearning.evaluation.runner import EvalSettings, run_evaluation
from unlearning.inference.answers import score_answers


@pytest.fixture()
def data(mllmu_dir: Path) -> MllmuBench:
    return MllmuBench(mllmu_dir)


def few_shot(data, collator, compat="default", context=10_000, **options):
    return evaluate.FewShot(evaluate.EvalOptions(**options), Compat.of("mllmu", compat), data.profiles("Full_Set"),
                            collator, context)


def test_letter_scores_equal_the_letter_token_of_the_full_answer_score(data, tiny_model, collator):
    questions = [(item, ex) for _, item, ex in
                 evaluate.build_questions("forget", data.profiles("forget_15"), few_shot(data, collator),
                                          "classification")][:6]
    fast = evaluate.score_letters(tiny_model, collator, questions, batch_size=4, accelerator=None, desc="t")
    for (item, example), letters in zip(questions, fast, strict=True):
        targets = [collator.target_text(dataclasses.replace(example, answer=letter))[1] for letter, _ in item.options]
        offset, _ = evaluate._single_token_choice(targets)
        full = score_answers(tiny_model, collator, [dataclasses.replace(example, answer=letter)
                                                    for letter, _ in item.options], batch_size=4)
        for (letter, _), score in zip(item.options, full, strict=True):
            assert letters[letter] == pytest.approx(score.token_logprobs[offset], abs=1e-4)


def test_single_token_choice_detection():
    assert evaluate._single_token_choice([[9, 1, 2], [9, 3, 2], [9, 4, 2]]) == (1, (1, 3, 4))
    assert evaluate._single_token_choice([[1, 2], [1, 2]]) is None  # not distinct
    assert evaluate._single_token_choice([[1, 5, 2], [3, 2]]) is None  # differ in length after the choice


def test_default_shots_come_from_outside_the_evaluated_set_and_repeat(data, collator):
    forget = list(data.profiles("forget_15"))
    built = evaluate.build_questions("forget", forget, few_shot(data, collator), "cloze")
    forget_ids = {p.id for p in forget}
    assert {p.id for p, _, _ in built} == forget_ids  # every evaluated profile is scored
    for _, item, example in built:
        assert len(example.shots) == 2 * 2  # 2 profiles x 2 cloze questions of this modality
        shot_ids = {shot.uid.split("/")[0] for shot in example.shots}
        assert not shot_ids & forget_ids
        assert all((shot.image is None) == (item.modality == "text") for shot in example.shots)
    again = evaluate.build_questions("forget", forget, few_shot(data, collator), "cloze")
    assert [ex for *_, ex in again] == [ex for *_, ex in built]
    other_seed = evaluate.build_questions("forget", forget, few_shot(data, collator, seed=1), "cloze")
    assert [ex.shots for *_, ex in other_seed] != [ex.shots for *_, ex in built]


def test_official_shots_come_from_the_evaluated_set_which_loses_them(data, collator):
    retain = list(data.profiles("retain_85"))
    built = evaluate.build_questions("retain", retain, few_shot(data, collator, "official"), "classification")
    scored = {p.id for p, _, _ in built}
    shot_ids = {shot.uid.split("/")[0] for _, _, ex in built for shot in ex.shots}
    assert len(shot_ids) == 1 and shot_ids <= {p.id for p in retain} and not shot_ids & scored
    assert len(scored) == len(retain) - 1
    celebrity = evaluate.build_questions("celebrity", list(data.profiles("Retain_Set")),
                                         few_shot(data, collator, "official"), "classification")
    assert all(not ex.shots for *_, ex in celebrity)  # the original asked celebrity MCQs zero-shot


def test_official_shots_are_the_drawn_ids_full_set_rows(data, collator):
    """eval.py looked the drawn IDs up in --few_shot_data (Full_Set): the Test_Set's demonstrations carry the
    original questions and images; celebrity demonstrations are the fictitious profiles sharing the IDs."""
    full = {p.id: p for p in data.profiles("Full_Set")}
    test = list(data.profiles("Test_Set"))
    built = evaluate.build_questions("test", test, few_shot(data, collator, "official"), "cloze")
    shot_ids = {shot.uid.split("/")[0] for *_, ex in built for shot in ex.shots}
    assert len(shot_ids) == 2 and not shot_ids & {p.id for p, _, _ in built}  # drawn profiles are not scored
    example = next(ex for _, item, ex in built if item.modality == "image_text")
    for shot_id in shot_ids:
        drawn = next(p for p in test if p.id == shot_id)
        shots = [shot for shot in example.shots if shot.uid.startswith(f"{shot_id}/")]
        full_prompts = {evaluate._prompt(item) for item in full[shot_id].items_of("cloze", "image_text")}
        assert {shot.question for shot in shots} == full_prompts
        assert all(shot.image == full[shot_id].image != drawn.image for shot in shots)
    celebrity = list(data.profiles("Retain_Set"))
    built = evaluate.build_questions("celebrity", celebrity, few_shot(data, collator, "official"), "cloze")
    ids = {shot.uid.split("/")[0] for *_, ex in built for shot in ex.shots}
    assert ids <= set(full) and len({p.id for p, _, _ in built}) == len(celebrity) - 2


def test_demonstrations_are_dropped_to_fit_the_context(data, collator):
    forget = list(data.profiles("forget_15"))
    roomy = evaluate.build_questions("forget", forget, few_shot(data, collator), "classification")
    length = max(collator.generation_batch([ex])["input_ids"].shape[1] for *_, ex in roomy)
    tight = few_shot(data, collator, context=length - 40)
    fitted = evaluate.build_questions("forget", forget, tight, "classification")
    assert tight.n_dropped > 0
    for (*_, big), (*_, small) in zip(roomy, fitted, strict=True):
        assert small.shots == big.shots[:len(small.shots)]
        assert collator.generation_batch([small])["input_ids"].shape[1] <= length - 40 or not small.shots


def test_evaluate_run_reports_four_sets_per_modality_deterministically(data, tiny_dir, tmp_path, monkeypatch):
    from unlearning.models.loading import load_model, load_processor
    from unlearning.recipes.common import make_collator

    def load():
        model = load_model(tiny_dir).eval()
        return model, make_collator(load_processor(tiny_dir), model.generation_config, None)

    config = {"batch_size": 16, "max_new_tokens": 4,
              "judge": {"enabled": "auto", "cache_dir": str(tmp_path / "cache"), "max_tokens": 700}}

    def run(out: Path, **overrides):
        compat = Compat.of("mllmu", overrides.pop("compat", "default"))
        settings = EvalSettings.from_config({**config, **overrides}, compat)
        return run_evaluation("mllmu", evaluate.evaluation(data, evaluate.EvalOptions(), settings, "forget_15"),
                              load, settings, out, None, None)

    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env-only")
        first = run(tmp_path / "a")
        asked = len(FakeOpenAI.requests)
        second = run(tmp_path / "b", overwrite=True)
    assert first.pop("cost")["model_loaded"] and second.pop("cost")["seconds"] >= 0  # what each took: not compared
    assert first.pop("provenance")["date"] <= second.pop("provenance")["date"]  # when: not compared either
    assert first == second and asked == len(FakeOpenAI.requests)  # same numbers; replies came from the cache
    assert set(first["sets"]) == {"forget", "test", "retain", "celebrity"}
    assert first["n_profiles"] == {"forget": 2, "test": 2, "retain": 8, "celebrity": 3}
    for values in first["sets"].values():
        for modality in ("image_text", "text"):
            cell = values[modality]
            assert 0 <= cell["classification_acc"] <= 1 and 0 <= cell["cloze_acc"] <= 1
            assert 0 <= cell["rougeL_f"] <= 1 and 1 <= cell["factuality"] <= 10
            assert cell["judge"]["n_failed"] == 0 and cell["judge"]["n_unparseable"] == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["celebrity.json", "forget_15.json", "retain_85.json", "selection.json", "summary.json",
                     "test_forget_15.json"]  # selection.json: the validation split's numbers (docs/selection.md)
    test = json.loads((tmp_path / "a" / "test_forget_15.json").read_text())
    assert {s["profile"] for s in test["samples"]} == set(data.split_ids("forget_15"))
    assert "sk-env-only" not in (tmp_path / "a" / "forget_15.json").read_text()


def test_forget_profiles_missing_from_the_test_set_are_named(mllmu_dir: Path, tmp_path: Path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from unlearning.data.examples import DataError

    copy = tmp_path / "mllmu"
    shutil.copytree(mllmu_dir, copy)
    forget_ids = set(MllmuBench(copy).split_ids("forget_15"))
    for shard in (copy / "Test_Set").glob("*.parquet"):
        rows = [row for row in pq.read_table(shard).to_pylist() if row["ID"] not in forget_ids]
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    with pytest.raises(DataError, match=r"Test_Set: no rows for forget profiles .* of forget_15"):
        evaluate.eval_sets(MllmuBench(copy), "forget_15", seed=0)


def test_zero_shot_celebrity_classification_still_skips_the_drawn_id(data, collator):
    """eval.py:263-266 draws the few-shot ID before deciding the celebrity task has no demonstrations, and skips
    that ID's rows all the same: under compat one celebrity is unscored and no prompt has a demonstration."""
    celebrities = list(data.profiles("Retain_Set"))
    official = evaluate.build_questions("celebrity", celebrities, few_shot(data, collator, "official"),
                                        "classification")
    default = evaluate.build_questions("celebrity", celebrities, few_shot(data, collator), "classification")
    assert len({p.id for p, _, _ in official}) == len(celebrities) - 1
    assert all(not example.shots for _, _, example in official)
    assert len({p.id for p, _, _ in default}) == len(celebrities)
