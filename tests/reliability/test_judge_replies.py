"""A judge that answers HTTP 200 with something that is not a chat completion (a proxy's HTML page, JSON without
choices or content): each reply is a failure of its own kind ("malformed reply: ..."), retried, counted in the
summary like any other failure, and the evaluation goes on.

The client is exercised against a real HTTP server on 127.0.0.1; one test goes through the FIUBench evaluation on
the small world of ``test_faults`` (trained once for this module).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fake_openai import FakeOpenAI, fake_openai_server
from tests.reliability.test_faults import World, eval_config, monkeypatch_module, trained, world  # noqa: F401
from unlearning.evaluation.judge.client import Judge, completion_text
from unlearning.evaluation.judge.judgments import judge_all, judge_counts, judge_status, store_judgment
from unlearning.evaluation.judge.settings import JudgeSettings
from unlearning.recipes.evaluate import evaluate

KEY = "sk-live-AbCdEfGh0123456789"
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
GOOD = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "0.75"}, "finish_reason": "stop"}]}

# body, Content-Type, the kind it is counted as
MALFORMED = {
    "not JSON": (b'{"choices": [{"message": {"content": "0.7', "application/json", "malformed reply: not JSON"),
    "HTML page": (HTML, "text/html; charset=utf-8", "malformed reply: HTML page"),
    "HTML page as JSON": (HTML, "application/json", "malformed reply: HTML page"),
    "empty body": (b"", "application/json", "malformed reply: empty body"),
    "a JSON list": (b"[1, 2]", "application/json", "malformed reply: not a JSON object"),
    "{}": (b"{}", "application/json", "malformed reply: no choices"),
    "choices empty": (b'{"choices": []}', "application/json", "malformed reply: no choices"),
    "choices null": (b'{"choices": null}', "application/json", "malformed reply: no choices"),
    "an error object": (b'{"error": {"message": "upstream timed out"}}', "application/json",
                        "malformed reply: no choices"),
    "choice without message": (b'{"choices": [{"index": 0, "finish_reason": "stop"}]}', "application/json",
                               "malformed reply: choice without a message"),
    "choice a string": (b'{"choices": ["0.75"]}', "application/json", "malformed reply: choice without a message"),
    "message without content": (b'{"choices": [{"message": {"role": "assistant"}}]}', "application/json",
                                "malformed reply: message without content"),
    "content a number": (b'{"choices": [{"message": {"role": "assistant", "content": 0.75}}]}', "application/json",
                         "malformed reply: content not a string"),
    "content a list": (b'{"choices": [{"message": {"content": [{"type": "text", "text": "0.75"}]}}]}',
                       "application/json", "malformed reply: content not a string"),
}


class MalformedOpenAI(FakeOpenAI):
    """``FakeOpenAI``, except that the prompts ``reply_for`` picks get HTTP 200 with a malformed body."""

    bodies: ClassVar[list[tuple[bytes, str]]] = []  # replies served in turn, before the ones reply_for picks
    asked: ClassVar[list[str]] = []  # every prompt received, retries included

    @staticmethod
    def reply_for(prompt: str) -> tuple[bytes, str] | None:
        return None

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        raw = self.rfile.read(length)
        prompt = json.loads(raw)["messages"][-1]["content"]
        cls = type(self)
        with _lock:
            cls.asked.append(prompt)
            served = cls.bodies.pop(0) if cls.bodies else cls.reply_for(prompt)
        if served is None:  # a well-formed reply, from FakeOpenAI
            self.rfile = io.BytesIO(raw)
            return super().do_POST()
        body, content_type = served
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


_lock = threading.Lock()


@contextmanager
def malformed_server(reply_for=None, bodies: list[tuple[bytes, str]] | None = None) -> Iterator[str]:
    MalformedOpenAI.asked, MalformedOpenAI.bodies = [], list(bodies or [])
    MalformedOpenAI.reply_for = staticmethod(reply_for or (lambda prompt: None))
    with fake_openai_server(MalformedOpenAI) as url:
        yield url


def settings(url: str, tmp_path: Path, **overrides) -> JudgeSettings:
    return JudgeSettings(base_url=url, cache_dir=str(tmp_path / "cache"), backoff_seconds=0.01, **overrides)


def first_float(text: str) -> float | None:
    try:
        return float(text.split("\n")[0])
    except ValueError:
        return None


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# ------------------------------------------------------------------ the client


@pytest.mark.parametrize("case", list(MALFORMED))
def test_each_malformed_reply_is_a_failure_of_its_kind_retried(case: str, tmp_path: Path, caplog):
    body, content_type, kind = MALFORMED[case]
    caplog.set_level(logging.WARNING)
    with malformed_server(lambda prompt: (body, content_type)) as url:
        reply = Judge(settings(url, tmp_path, max_retries=2)).complete("score=0.50")
    assert reply.text is None and reply.error_kind == kind
    assert reply.error.startswith(f"{kind} after 3 attempts: HTTP 200 with ")
    assert len(MalformedOpenAI.asked) == 3  # retried like a server error
    assert caplog.text.count(f"judge: {kind}, retrying in") == 2
    assert "Traceback" not in caplog.text


def test_a_malformed_reply_then_a_good_one_is_a_success(tmp_path: Path):
    with malformed_server(bodies=[MALFORMED["HTML page"][:2], MALFORMED["{}"][:2]]) as url:
        judge = Judge(settings(url, tmp_path, max_retries=2))
        reply = judge.complete("score=0.50")
        assert reply.text.startswith("0.50") and reply.error is None and len(MalformedOpenAI.asked) == 3
        assert judge.complete("score=0.50").cached  # only a good reply is cached


def test_a_malformed_reply_is_not_cached_and_asked_again(tmp_path: Path):
    with malformed_server(lambda prompt: MALFORMED["choices empty"][:2]) as url:
        assert Judge(settings(url, tmp_path, max_retries=0)).complete("score=0.20").text is None
    with malformed_server() as url:
        reply = Judge(settings(url, tmp_path, max_retries=0)).complete("score=0.20")
    assert reply.text.startswith("0.20") and not reply.cached and MalformedOpenAI.asked == ["score=0.20"]


def test_the_body_is_quoted_short_and_without_the_key(tmp_path: Path):
    page = f"<html><body>Proxy login required for key {KEY}. {'x' * 500}</body></html>".encode()
    with malformed_server(lambda prompt: (page, "text/html")) as url:
        reply = Judge(settings(url, tmp_path, max_retries=0)).complete("score=0.50")
    assert reply.error_kind == "malformed reply: HTML page" and "Proxy login required" in reply.error
    assert KEY not in reply.error and len(reply.error) < 250


def test_well_formed_replies_still_read(tmp_path: Path):
    assert completion_text(json.dumps(GOOD).encode()) == "0.75"
    empty = {**GOOD, "choices": [{"message": {"role": "assistant", "content": ""}}]}
    assert completion_text(json.dumps(empty).encode()) == ""  # an empty answer is unparseable, not malformed


def test_malformed_replies_are_counted_by_kind_beside_other_outcomes(tmp_path: Path):
    """Among good, unparseable, refused (HTTP 400) replies, each malformed one is counted under its kind."""
    picks = {"[html]": MALFORMED["HTML page"][:2], "[nochoices]": MALFORMED["{}"][:2],
             "[nocontent]": MALFORMED["message without content"][:2]}

    def reply_for(prompt: str) -> tuple[bytes, str] | None:
        return next((picks[tag] for tag in picks if tag in prompt), None)

    prompts = ["a score=0.75", "b score=0.10", "[garbage]", "[bad]", "[html] 1", "[html] 2", "[nochoices]",
               "[nocontent]"]
    with malformed_server(reply_for) as url:
        judgments = judge_all(Judge(settings(url, tmp_path, max_retries=1)), prompts, first_float)
    assert [j.value for j in judgments[:2]] == [0.75, 0.10]
    records = [{} for _ in prompts]
    for record, judgment in zip(records, judgments, strict=True):
        store_judgment(record, "score", judgment)
    counts = judge_counts(records, "score")
    assert counts == {"n": 8, "n_scored": 2, "n_failed": 5, "n_unparseable": 1, "complete": False,
                      "failures": {"HTTP 400 BadRequestError": 1, "malformed reply: HTML page": 2,
                                   "malformed reply: message without content": 1,
                                   "malformed reply: no choices": 1}}
    assert judge_status([counts], None) == ("incomplete: 5 of 8 requests failed (HTTP 400 BadRequestError: 1, "
                                            "malformed reply: HTML page: 2, malformed reply: message without "
                                            "content: 1, malformed reply: no choices: 1)")
    assert records[4]["judge_error"] == "malformed reply: HTML page" and records[4]["judge_reply"] is None
    malformed_asked = [p for p in MalformedOpenAI.asked if reply_for(p)]
    assert len(malformed_asked) == 2 * 4  # each malformed prompt asked twice (max_retries=1), [bad] once
    assert MalformedOpenAI.asked.count("[bad]") == 1


# ------------------------------------------------------------------ end to end (FIUBench)


def test_fiubench_evaluation_counts_malformed_replies_and_completes(world: World, caplog, monkeypatch):  # noqa: F811
    """A judge behind a flaky proxy: a third of the prompts get an HTML page, a quarter of the rest ``{}``; the
    evaluation finishes with the judge incomplete (counted by kind), and a re-run asks only those prompts again."""
    caplog.set_level(logging.INFO)

    def reply_for(prompt: str) -> tuple[bytes, str] | None:
        bucket = zlib.crc32(prompt.encode()) % 12
        return MALFORMED["HTML page"][:2] if bucket < 4 else MALFORMED["{}"][:2] if bucket < 6 else None

    ga = world.run("ga_forget10_")
    judged = (f"run_dirs=[{ga}]", "eval.judge.max_retries=1", "eval.judge.backoff_seconds=0.01",
              "benchmark.reference_split=null")
    with malformed_server(reply_for) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        (summary,) = evaluate(eval_config(world, *judged))
        prompts = set(MalformedOpenAI.asked)
        html = sum(reply_for(p) == MALFORMED["HTML page"][:2] for p in prompts)
        empty = sum(reply_for(p) == MALFORMED["{}"][:2] for p in prompts)
        assert html and empty and len(prompts) > html + empty  # the hash split some of each
        assert len(MalformedOpenAI.asked) == len(prompts) + html + empty  # each malformed one asked twice
        failures = {"malformed reply: HTML page": html, "malformed reply: no choices": empty}
        status = summary["judge"]["status"]
        assert status == (f"incomplete: {html + empty} of {len(prompts)} requests failed "
                          f"(malformed reply: HTML page: {html}, malformed reply: no choices: {empty})")
        counts = [c for key, c in summary["judge"].items() if isinstance(c, dict)]
        assert sum(c["n_failed"] for c in counts) == html + empty
        total: dict[str, int] = {}
        for c in counts:
            for kind, n in c["failures"].items():
                total[kind] = total.get(kind, 0) + n
        assert total == failures
        assert summary["retain"]["gpt"] is None and summary["retain"]["gpt_partial"] is not None
        assert summary["retain"]["rougeL_recall"] is not None and summary["forget"]["rougeL_recall"] is not None
        assert "malformed reply: HTML page" in caplog.text and "Traceback" not in caplog.text
        assert KEY not in caplog.text

        asked_before = set(MalformedOpenAI.asked)
        MalformedOpenAI.asked, MalformedOpenAI.reply_for = [], staticmethod(lambda prompt: None)  # proxy fixed
        (again,) = evaluate(eval_config(world, *judged))
        assert sorted(MalformedOpenAI.asked) == sorted(p for p in asked_before if reply_for(p))
        assert again["judge"]["status"] == "scored" and again["retain"]["gpt"] is not None
