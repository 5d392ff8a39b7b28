"""An LLM-as-judge client for any OpenAI-compatible endpoint (OpenAI, vLLM, a local server).

The key comes from the environment only (``OPENAI_API_KEY`` by default, its name configurable), the
endpoint from ``OPENAI_BASE_URL`` or the config. Requests run with bounded concurrency, rate limits and
timeouts are retried with exponential backoff, and every successful reply is cached on disk keyed by
(model, system prompt, prompt, decoding settings), so a re-run costs nothing. Failures are returned as
such (never dropped) for the caller to count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class JudgeSettings:
    enabled: str = "auto"  # auto: judge when an endpoint is configured, skip otherwise; true: require one; false
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable holding the key
    system_prompt: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    concurrency: int = 8
    max_retries: int = 5
    backoff_seconds: float = 2.0
    timeout_seconds: float = 60.0
    cache_dir: str = ".judge_cache"


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # None when the request failed after its retries
    error: str | None = None
    cached: bool = False


@dataclass(frozen=True)
class Judgment:
    """One prompt's outcome: the parsed value (None when the request failed or the reply did not parse)."""

    value: float | None
    reply: str | None  # None when the request failed after its retries, or when the judge was not asked
    failed: bool = False

    @property
    def unparseable(self) -> bool:
        return not self.failed and self.reply is not None and self.value is None


class JudgeUnavailable(RuntimeError):
    """Judging was required (enabled: true) but no endpoint is configured."""


class ReplyCache:
    """A small SQLite table of (key -> reply text), safe to use from the request threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(path), check_same_thread=False)
        self._connection.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._connection.commit()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._connection.execute("SELECT text FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._connection.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, text))
            self._connection.commit()


def judge_unavailable_reason(settings: JudgeSettings) -> str | None:
    """Why no judging happens with these settings, or None when it can."""
    if str(settings.enabled).lower() in ("false", "0", "no", "off"):
        return "judge disabled (judge.enabled=false)"
    if os.environ.get(settings.api_key_env) or settings.base_url or os.environ.get("OPENAI_BASE_URL"):
        return None
    reason = f"no judge endpoint: set {settings.api_key_env} (and OPENAI_BASE_URL for a compatible server)"
    if str(settings.enabled).lower() in ("true", "1", "yes", "on"):
        raise JudgeUnavailable(reason)
    return reason


class Judge:
    def __init__(self, settings: JudgeSettings) -> None:
        from openai import OpenAI  # imported here: only runs that judge need the client

        self.settings = settings
        self._client = OpenAI(
            api_key=os.environ.get(settings.api_key_env) or "EMPTY",  # local servers accept any key
            base_url=settings.base_url or os.environ.get("OPENAI_BASE_URL") or None,
            max_retries=0,  # retries are ours, with backoff and a count
            timeout=settings.timeout_seconds,
        )
        self._cache = ReplyCache(Path(settings.cache_dir) / "judge_cache.sqlite")

    def cache_key(self, prompt: str) -> str:
        s = self.settings
        material = json.dumps([s.model, s.system_prompt, prompt, s.max_tokens, s.temperature])
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def complete(self, prompt: str) -> JudgeReply:
        key = self.cache_key(prompt)
        cached = self._cache.get(key)
        if cached is not None:
            return JudgeReply(cached, cached=True)
        reply = self._request(prompt)
        if reply.text is not None:
            self._cache.put(key, reply.text)
        return reply

    def complete_many(self, prompts: Sequence[str]) -> list[JudgeReply]:
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            return list(pool.map(self.complete, prompts))

    def _request(self, prompt: str) -> JudgeReply:
        import openai

        transient = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                     openai.InternalServerError)
        messages = ([{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt
                    else []) + [{"role": "user", "content": prompt}]
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self._client.chat.completions.create(
                    model=self.settings.model, messages=messages, max_tokens=self.settings.max_tokens,
                    temperature=self.settings.temperature,
                )
                return JudgeReply(response.choices[0].message.content or "")
            except transient as error:
                if attempt == self.settings.max_retries:
                    return JudgeReply(None, error=f"{type(error).__name__} after {attempt + 1} attempts")
                delay = self.settings.backoff_seconds * 2**attempt * (1 + random.random() / 4)
                log.warning("judge: %s, retrying in %.1f s", type(error).__name__, delay)
                time.sleep(delay)
            except openai.OpenAIError as error:  # bad request, authentication: retrying will not help
                return JudgeReply(None, error=f"{type(error).__name__}: {str(error)[:200]}")
        raise AssertionError("unreachable")


def build_judge(config: JudgeSettings | Mapping[str, Any]) -> tuple[Judge | None, str]:
    """The judge an evaluation's ``judge`` settings ask for, or None, and the status to report: "scored", or
    "skipped: <why>" (raises JudgeUnavailable when judging is required but no endpoint is configured)."""
    settings = config if isinstance(config, JudgeSettings) else JudgeSettings(**config)
    skipped = judge_unavailable_reason(settings)
    return (Judge(settings), "scored") if skipped is None else (None, f"skipped: {skipped}")


def complete_on_main(judge: Judge, prompts: Sequence[str], accelerator: Any | None = None) -> list[JudgeReply]:
    """Ask the judge from the main process only and share its replies with the others (one request per prompt
    however many processes evaluate)."""
    if accelerator is None or accelerator.num_processes == 1:
        return judge.complete_many(prompts)
    from accelerate.utils import broadcast_object_list

    replies = [judge.complete_many(prompts) if accelerator.is_main_process else None]
    return broadcast_object_list(replies, from_process=0)[0]


def judge_all(judge: Judge, prompts: Sequence[str], parse: Callable[[str], float | None],
              accelerator: Any | None = None) -> list[Judgment]:
    """Ask the judge about every prompt and parse each reply; failures are kept as such, for the counts."""
    replies = complete_on_main(judge, prompts, accelerator)
    judgments = [Judgment(None, None, failed=True) if reply.text is None else Judgment(parse(reply.text), reply.text)
                 for reply in replies]
    log.info("judge: %d prompts, %d cached, %d failed, %d unparseable", len(prompts),
             sum(r.cached for r in replies), sum(j.failed for j in judgments), sum(j.unparseable for j in judgments))
    return judgments


def store_judgment(record: dict[str, Any], key: str, judgment: Judgment) -> None:
    """Write a judgment into a per-sample record: the value under ``key``, the raw reply, whether it failed."""
    record[key] = judgment.value
    record["judge_reply"] = judgment.reply
    record["judge_failed"] = judgment.failed


def judge_counts(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, int]:
    """How a judged metric's records fared: every benchmark counts failures and unparseable replies this way."""
    judged = [r for r in records if "judge_failed" in r]
    failed = sum(bool(r["judge_failed"]) for r in judged)
    unparseable = sum(not r["judge_failed"] and r.get("judge_reply") is not None and r.get(key) is None
                      for r in judged)
    return {"n": len(judged), "n_scored": sum(r.get(key) is not None for r in judged), "n_failed": failed,
            "n_unparseable": unparseable}
