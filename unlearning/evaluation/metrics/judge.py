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
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.runs.io import SECRET_VALUE

log = logging.getLogger(__name__)


ENABLED = {"auto": "auto", "true": True, "false": False}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-]{32,}")  # a server may quote a key of any provider's shape


@dataclass
class JudgeSettings:
    enabled: bool | str = "auto"  # auto: judge when an endpoint is configured, skip otherwise; true: require; false
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable holding the key
    system_prompt: str | None = None
    max_tokens: int = 64
    temperature: float | None = 0.0  # None: the API's default (not sent)
    concurrency: int = 8
    max_retries: int = 5
    backoff_seconds: float = 2.0
    timeout_seconds: float = 60.0
    cache_dir: str = ".judge_cache"
    max_failed: float = 0.0  # the fraction of a judged metric's requests that may fail with it still complete

    def __post_init__(self) -> None:
        self.enabled = _enabled(self.enabled)
        if not isinstance(self.api_key_env, str) or not ENV_NAME.fullmatch(self.api_key_env) or (
                len(self.api_key_env) >= 20 and "_" not in self.api_key_env):
            # never echo the value: it may be the key itself, pasted in the wrong place
            raise ValueError("eval.judge.api_key_env must be the *name* of an environment variable (such as "
                             "OPENAI_API_KEY), not its value; the value given is not shown because it may be a key")
        if not 0.0 <= float(self.max_failed) < 1.0:
            raise ValueError(f"eval.judge.max_failed is a fraction in [0, 1), got {self.max_failed!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.max_tokens < 1:
            raise ValueError("eval.judge: concurrency and max_tokens must be positive, max_retries not negative")

    @property
    def required(self) -> bool:
        return self.enabled is True

    @property
    def disabled(self) -> bool:
        return self.enabled is False


def _enabled(value: Any) -> bool | str:
    """true, false or auto (YAML booleans or their spelling); anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ENABLED:
        return ENABLED[value.strip().lower()]
    raise ValueError(f"eval.judge.enabled must be true, false or auto, got {value!r}")


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without the given secrets and without anything shaped like an API key (error messages from
    some servers quote part of the key)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return LONG_TOKEN.sub("***", SECRET_VALUE.sub("***", text))


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # None when the request failed after its retries
    error: str | None = None  # why it failed (kind: message), keys scrubbed
    cached: bool = False
    error_kind: str | None = None  # "HTTP 500", "APIConnectionError", ...: what failures are counted by


@dataclass(frozen=True)
class Judgment:
    """One prompt's outcome: the parsed value (None when the request failed or the reply did not parse)."""

    value: float | None
    reply: str | None  # None when the request failed after its retries, or when the judge was not asked
    failed: bool = False
    error_kind: str | None = None

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
    if settings.disabled:
        return "judge disabled (judge.enabled=false)"
    if os.environ.get(settings.api_key_env) or settings.base_url or os.environ.get("OPENAI_BASE_URL"):
        return None
    reason = f"no judge endpoint: set {settings.api_key_env} (and OPENAI_BASE_URL for a compatible server)"
    if settings.required:
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
                sampling = {} if self.settings.temperature is None else {"temperature": self.settings.temperature}
                response = self._client.chat.completions.create(
                    model=self.settings.model, messages=messages, max_tokens=self.settings.max_tokens, **sampling,
                )
                return JudgeReply(response.choices[0].message.content or "")
            except transient as error:
                if attempt == self.settings.max_retries:
                    return self._failure(error, f" after {attempt + 1} attempts")
                delay = self.settings.backoff_seconds * 2**attempt * (1 + random.random() / 4)
                log.warning("judge: %s, retrying in %.1f s", _error_kind(error), delay)
                time.sleep(delay)
            except openai.OpenAIError as error:  # bad request, authentication: retrying will not help
                return self._failure(error, "")
        raise AssertionError("unreachable")

    def _failure(self, error: Exception, suffix: str) -> JudgeReply:
        kind = _error_kind(error)
        message = scrub(str(error), [os.environ.get(self.settings.api_key_env, "")])[:300]
        return JudgeReply(None, error=f"{kind}{suffix}: {message}", error_kind=kind)


def _error_kind(error: Exception) -> str:
    """What a failure is counted as: the HTTP status and the error's class, or the class alone."""
    status = getattr(error, "status_code", None)
    return f"HTTP {status} {type(error).__name__}" if status else type(error).__name__


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
    judgments = [Judgment(None, None, failed=True, error_kind=reply.error_kind) if reply.text is None
                 else Judgment(parse(reply.text), reply.text) for reply in replies]
    log.info("judge: %d prompts, %d cached, %d failed, %d unparseable", len(prompts),
             sum(r.cached for r in replies), sum(j.failed for j in judgments), sum(j.unparseable for j in judgments))
    examples: dict[str, tuple[int, str]] = {}
    for reply in replies:
        if reply.text is None:
            count, message = examples.get(reply.error_kind or "unknown", (0, reply.error or ""))
            examples[reply.error_kind or "unknown"] = (count + 1, message)
    for kind, (count, message) in sorted(examples.items()):
        log.warning("judge: %d of %d requests failed with %s (e.g. %s); they are asked again on the next run",
                    count, len(prompts), kind, message)
    return judgments


def store_judgment(record: dict[str, Any], key: str, judgment: Judgment) -> None:
    """Write a judgment into a per-sample record: the value under ``key``, the raw reply, whether it failed
    (and how: ``judge_error``)."""
    record[key] = judgment.value
    record["judge_reply"] = judgment.reply
    record["judge_failed"] = judgment.failed
    if judgment.failed:
        record["judge_error"] = judgment.error_kind or "unknown"


def judge_counts(records: Sequence[Mapping[str, Any]], key: str, max_failed: float = 0.0) -> dict[str, Any]:
    """How a judged metric's records fared, counted the same way by every benchmark: asked (``n``), scored,
    failed (by kind), unparseable; ``complete`` when at most ``max_failed`` of the requests failed."""
    judged = [r for r in records if "judge_failed" in r]
    failed = [r for r in judged if r["judge_failed"]]
    unparseable = sum(not r["judge_failed"] and r.get("judge_reply") is not None and r.get(key) is None
                      for r in judged)
    kinds: dict[str, int] = {}
    for record in failed:
        kind = record.get("judge_error") or "unknown"
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"n": len(judged), "n_scored": sum(r.get(key) is not None for r in judged), "n_failed": len(failed),
            "n_unparseable": unparseable, "failures": dict(sorted(kinds.items())),
            "complete": bool(judged) and len(failed) <= max_failed * len(judged)}


def add_counts(counts: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The counts of several judged metrics (one evaluation part) together; None when nothing was judged."""
    present = [c for c in counts if c]
    if not present:
        return None
    total: dict[str, Any] = {key: sum(c[key] for c in present) for key in ("n", "n_scored", "n_failed",
                                                                           "n_unparseable")}
    kinds: dict[str, int] = {}
    for c in present:
        for kind, n in c.get("failures", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    return {**total, "failures": dict(sorted(kinds.items())), "complete": all(c["complete"] for c in present)}


def judge_status(counts: Sequence[Mapping[str, Any] | None], skipped: str | None) -> str:
    """The summary's judge status: skipped (why), scored, incomplete (how many failed, by kind) or failed."""
    if skipped is not None:
        return f"skipped: {skipped}"
    total = add_counts(counts)
    if total is None or total["n"] == 0:
        return "scored (nothing to judge)"
    if total["n_failed"] == 0:
        return "scored"
    kinds = ", ".join(f"{kind}: {n}" for kind, n in total["failures"].items())
    if total["n_failed"] == total["n"]:
        return f"failed: all {total['n']} requests failed ({kinds})"
    return f"incomplete: {total['n_failed']} of {total['n']} requests failed ({kinds})"


def judged_cell(value: float | None, counts: Mapping[str, Any] | None, scale: float = 1.0) -> float | str | None:
    """A judged metric in a results table: the number when complete, else the partial mean with how many
    requests it rests on ("100.0 (4/20)"), or None when nothing was scored."""
    if counts is None or counts.get("complete", True):
        return None if value is None else scale * value
    if value is None:
        return None
    return f"{scale * value:.1f} ({counts['n_scored']}/{counts['n']})"
