"""MM-Vet: mm-vet.json + images/, bad input, the judge's grades (hand-made replies), "judge needed" without a judge;
end to end through the engine's general part on the tiny model, with VQAv2 beside it and the judge over HTTP."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from eval.mmvet import (
    JUDGE_NEEDED,
    MMVetItem,
    MMVetSettings,
    grading_prompt,
    load_mmvet,
    mmvet_questions,
    parse_grade,
    score_mmvet,
    write_mmvet,
)
from eval.release import draw
from eval.vqav2 import VQAv2Settings, write_vqav2
from unlearning.data.examples import DataError
from unlearning.evaluation.general import general_part, general_results, mean_accuracy
from unlearning.evaluation.judge.client import JudgeReply
from unlearning.evaluation.judge.settings import JudgeSettings
from unlearning.evaluation.runner import EvalContext, LazyModel


@dataclass
class CannedJudge:
    """Replies in order; None stands for a request that failed after its retries."""

    replies: list[str | None]
    settings: JudgeSettings = field(default_factory=JudgeSettings)
    prompts: list[str] = field(default_factory=list)

    def complete_many(self, prompts):
        self.prompts += prompts
        return [JudgeReply(r) if r is not None else JudgeReply(None, "HTTP 500: x", error_kind="HTTP 500")
                for r in self.replies[:len(prompts)]]


def test_release_layout_and_bad_input(tmp_path: Path):
    write_mmvet(tmp_path, n_images=3, image_size=32)
    items = load_mmvet(tmp_path)
    assert [i.question_id for i in items] == ["v1_0", "v1_1", "v1_2"] and "<AND>" in items[1].answer
    assert items[1].capabilities == ("rec", "math") and items[0].image == tmp_path / "images" / "v1_0.png"
    records = json.loads((tmp_path / "mm-vet.json").read_text())
    records["v1_2"]["capability"] = "rec"
    (tmp_path / "mm-vet.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match="mm-vet.json: question 'v1_2': field 'capability' must be list"):
        load_mmvet(tmp_path)
    records["v1_2"]["capability"] = ["rec"]
    records["v1_2"]["imagename"] = "gone.png"
    (tmp_path / "mm-vet.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match="question 'v1_2': image .*gone.png not found"):
        load_mmvet(tmp_path)
    bad_prompt = tmp_path / "prompt.txt"
    bad_prompt.write_text("grade {question} | {answer}")
    (tmp_path / "images" / "gone.png").write_bytes((tmp_path / "images" / "v1_0.png").read_bytes())
    with pytest.raises(DataError, match=r"prompt.txt: the grading prompt lacks \{prediction\}"):
        mmvet_questions(MMVetSettings(data_dir=str(tmp_path), judge_prompt_file=str(bad_prompt)))


def test_grading_prompt_and_parse():
    item = MMVetItem("v1_0", Path("a"), "What is x?", "-1<AND>-5", ("math",))
    prompt = grading_prompt("{question} | {answer} | {prediction} |", item, "x = -1\nor -5")
    assert prompt == "What is x? | -1 <AND> -5 | x = -1 or -5 |"
    assert parse_grade("0.5") == 0.5 and parse_grade(" 1.0\nbecause") == 1.0
    assert parse_grade("1.5") is None and parse_grade("half") is None and parse_grade("") is None


def test_grades_hand_made():
    items = draw([MMVetItem(str(i), Path("a"), "q", "a", caps) for i, caps in
                  enumerate([("rec",), ("rec", "ocr"), ("ocr",)])], None, 0)
    judge = CannedJudge(["1.0", "0.4 partly", "no idea"])  # the unparseable reply grades 0.0, as officially
    result = score_mmvet(items, ["x", "y", "z"], judge)
    assert result["accuracy"] == pytest.approx(1.4 / 3) and result["grades"] == [1.0, 0.4, 0.0]
    assert result["capabilities"] == {"ocr": {"accuracy": pytest.approx(0.2), "n": 2},
                                      "rec": {"accuracy": pytest.approx(0.7), "n": 2}}
    assert result["judge"]["n_unparseable"] == 1 and result["judge"]["complete"]
    assert len(judge.prompts) == 3 and judge.prompts[0].rstrip().endswith("q | a | x |")
    failed = score_mmvet(items, ["x", "y", "z"], CannedJudge(["1.0", None, "0.0"]))
    assert failed["accuracy"] is None and failed["partial"] == 0.5 and failed["judge"]["n_failed"] == 1


def test_no_judge_means_judge_needed():
    items = draw([MMVetItem("0", Path("a"), "q", "a", ("rec",))], None, 0)
    assert score_mmvet(items, ["x"], None) == {"accuracy": None, "judge_needed": JUDGE_NEEDED, "n": 1,
                                               "subset": None}


def test_end_to_end_general_part(tmp_path: Path, tiny_model, collator):
    from tests.fake_openai import fake_openai_server
    from unlearning.evaluation.judge.client import Judge

    write_mmvet(tmp_path / "mmvet", n_images=3, image_size=56)
    write_vqav2(tmp_path / "vqav2", n_images=2, image_size=56)
    settings = {"vqav2": VQAv2Settings(data_dir=str(tmp_path / "vqav2"), max_samples=4, seed=1),
                "mmvet": MMVetSettings(data_dir=str(tmp_path / "mmvet"), max_new_tokens=6)}
    model = LazyModel(lambda: (tiny_model, collator))
    unjudged = general_part(settings, 4, None)
    results = unjudged.compute(EvalContext(model, None, None, None))
    assert unjudged.fingerprint["judge"] is None and "judge" not in results
    assert results["mmvet"]["accuracy"] is None and results["mmvet"]["judge_needed"] == JUDGE_NEEDED
    assert 0.0 <= results["vqav2"]["accuracy"] <= 1.0 and results["vqav2"]["subset"] == {"n": 4, "of": 6, "seed": 1}
    general = general_results({"general": {**results, "fingerprint": {}}})
    assert mean_accuracy(general) == results["vqav2"]["accuracy"]  # the n/a one left out of the mean
    with fake_openai_server() as url:
        judge = Judge(JudgeSettings(base_url=url, cache_dir=str(tmp_path / "cache")))
        part = general_part(settings, 4, {"model": "gpt-4o-mini"})
        judged = part.compute(EvalContext(model, judge, None, None))
    assert part.fingerprint["judge"] == {"model": "gpt-4o-mini"}
    assert judged["mmvet"]["accuracy"] == 0.0  # the fake server grades these "0.00"
    assert judged["judge"] == {"n": 3, "n_scored": 3, "n_failed": 0, "n_unparseable": 0, "failures": {},
                               "complete": True}
    assert set(general_results({"general": judged})) == {"vqav2", "mmvet"}
    assert general_part({"vqav2": settings["vqav2"]}, 4, {"model": "x"}).fingerprint.get("judge") is None
