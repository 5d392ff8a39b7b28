"""The judge client against a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API."""

from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, fake_openai_server
from unlearning.evaluation.judge.client import Judge
from unlearning.evaluation.judge.judgments import judge_all, judge_counts, store_judgment
from unlearning.evaluation.judge.settings import JudgeSettings, JudgeUnavailable, judge_unavailable_reason


@pytest.fixture()
def server():
    with fake_openai_server() as url:
        yield url


def first_float(text: str) -> float | None:
    try:
        return float(text.split("\n")[0])
    except ValueError:
        return None


def settings(url: str, tmp_path: Path, **overrides) -> JudgeSettings:
    return JudgeSettings(base_url=url, cache_dir=str(tmp_path / "cache"), backoff_seconds=0.01, **overrides)


def test_scores_counts_and_secret_handling(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    judge = Judge(settings(server, tmp_path, max_retries=1))
    prompts = ["q1 score=0.75", "q2 score=0.10", "[garbage]", "[bad]"]
    judgments = judge_all(judge, prompts, first_float)
    assert [j.value for j in judgments] == [0.75, 0.10, None, None]
    assert [(j.failed, j.unparseable) for j in judgments] == [(False, False)] * 2 + [(False, True), (True, False)]
    records = [{} for _ in prompts]
    for record, judgment in zip(records, judgments, strict=True):
        store_judgment(record, "score", judgment)
    assert judge_counts(records, "score") == {"n": 4, "n_scored": 2, "n_failed": 1, "n_unparseable": 1,
                                              "failures": {"HTTP 400 BadRequestError": 1}, "complete": False}
    assert judge_counts(records, "score", max_failed=0.25)["complete"] is True
    assert records[3] == {"score": None, "judge_reply": None, "judge_failed": True,
                          "judge_error": "HTTP 400 BadRequestError"}
    assert {r["auth"] for r in FakeOpenAI.requests} == {"Bearer sk-test-secret"}
    assert FakeOpenAI.requests[0]["body"]["model"] == "gpt-4o-mini"
    assert b"sk-test-secret" not in (tmp_path / "cache" / "judge_cache.sqlite").read_bytes()


def test_cache_makes_reruns_free_and_is_keyed_by_model(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    prompts = [f"q{i} score=0.{i}0" for i in range(6)]
    first = judge_all(Judge(settings(server, tmp_path)), prompts, first_float)
    assert len(FakeOpenAI.requests) == 6
    again = judge_all(Judge(settings(server, tmp_path)), prompts, first_float)
    assert again == first and len(FakeOpenAI.requests) == 6
    judge_all(Judge(settings(server, tmp_path, model="local-llama")), prompts[:1], first_float)
    assert len(FakeOpenAI.requests) == 7


def test_rate_limits_are_retried_with_backoff(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    FakeOpenAI.busy_left = 2
    reply = Judge(settings(server, tmp_path, max_retries=3)).complete("[busy] score=0.50")
    assert reply.text.startswith("0.50") and len(FakeOpenAI.requests) == 3
    FakeOpenAI.busy_left = 5
    failed = Judge(settings(server, tmp_path, max_retries=1)).complete("[busy] again score=0.5")
    assert failed.text is None and "RateLimitError after 2 attempts" in failed.error


def test_local_server_without_a_key(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    assert judge_unavailable_reason(JudgeSettings()) is None
    reply = Judge(JudgeSettings(cache_dir=str(tmp_path))).complete("score=0.90")
    assert reply.text.startswith("0.90")


def test_unavailable_without_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert "set OPENAI_API_KEY" in judge_unavailable_reason(JudgeSettings())
    assert "disabled" in judge_unavailable_reason(JudgeSettings(enabled="false"))
    with pytest.raises(JudgeUnavailable):
        judge_unavailable_reason(JudgeSettings(enabled="true"))


def test_temperature_none_leaves_it_to_the_api(server, tmp_path, monkeypatch):
    """MLLMU-Bench's compat: eval_gpt.py sent no temperature (the API's default 1.0); ours sends 0."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Judge(settings(server, tmp_path)).complete("score=0.10 a")
    assert FakeOpenAI.requests[-1]["body"]["temperature"] == 0.0
    Judge(settings(server, tmp_path, temperature=None)).complete("score=0.10 b")
    assert "temperature" not in FakeOpenAI.requests[-1]["body"]
