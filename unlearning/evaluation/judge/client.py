"""An LLM-as-judge client for any OpenAI-compatible endpoint (OpenAI, vLLM, a local server).

Requests run with bounded concurrency, rate limits and timeouts are retried with exponential backoff, and every
successful reply is cached on disk keyed by (model, system prompt, prompt, decoding settings), so a re-run costs
nothing. Failures are returned as such (never dropped) for the caller to count; error messages are scrubbed of
keys. A reply that is not a chat completion (a proxy's HTML page, JSON without choices or content) is a failure of
its own kind ("malformed reply: ..."), retried like a server error: the body is read and checked here rather than
by the SDK, which passes such bodies through as strings or half-empty objects.
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.evaluation.judge.settings import JudgeSettings, scrub
from unlearning.runs.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # None when the request failed after its retries
    error: str | None = None  # why it failed (kind: message), keys scrubbed
    cached: bool = False
    error_kind: str | None = None  # "HTTP 500", "APIConnectionError", "malformed reply: not JSON", ...: what
    # failures are counted by


class MalformedReply(ValueError):
    """An HTTP 200 whose body is not a chat completion; ``kind`` is what it is counted as (a short, fixed
    description), the message quotes the start of the body."""

    def __init__(self, description: str, body: str) -> None:
        self.kind = f"malformed reply: {description}"
        excerpt = " ".join(body.split())[:120]
        super().__init__(f"HTTP 200 with body {excerpt!r}" if excerpt else "HTTP 200 with an empty body")


def completion_text(body: bytes, content_type: str = "") -> str:
    """The first choice's message content of a chat-completions body, or ``MalformedReply`` saying what is wrong
    with it (the SDK would return an HTML page as a ``str`` and ``{}`` as a completion without choices)."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        raise MalformedReply("empty body", text)
    try:
        payload = json.loads(text)
    except ValueError:
        html = "html" in content_type.lower() or text.lstrip()[:1] == "<"
        raise MalformedReply("HTML page" if html else "not JSON", text) from None
    if not isinstance(payload, dict):
        raise MalformedReply("not a JSON object", text)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("no choices", text)
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise MalformedReply("choice without a message", text)
    content = message.get("content")
    if content is None:
        raise MalformedReply("message without content", text)
    if not isinstance(content, str):
        raise MalformedReply("content not a string", text)
    return content


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


class Judge:
    """The judge of one evaluation. ``prompt_log``, when set (on a copy: ``eval.write_prompts``), gets each request's
    messages and sampling settings (``request``), never the key."""

    prompt_log: Any = None  # unlearning.evaluation.runner.PromptLog

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
            replies = list(progress(pool.map(self.complete, prompts), total=len(prompts), desc="judge"))
        if self.prompt_log is not None:
            self.prompt_log.judge({**self.request(prompt), "cached": reply.cached}
                                  for prompt, reply in zip(prompts, replies, strict=True))
        return replies

    def request(self, prompt: str) -> dict[str, Any]:
        """What is sent for ``prompt``, the key aside: the model, the messages and the sampling settings."""
        s = self.settings
        messages = ([{"role": "system", "content": s.system_prompt}] if s.system_prompt else []) + [
            {"role": "user", "content": prompt}]
        sampling: dict[str, Any] = {} if s.temperature is None else {"temperature": s.temperature}
        if s.max_tokens is not None:  # None: no cap sent
            sampling["max_tokens"] = s.max_tokens
        return {"model": s.model, "messages": messages, **sampling}

    def _request(self, prompt: str) -> JudgeReply:
        import openai

        transient = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                     openai.InternalServerError)
        request = self.request(prompt)
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self._client.chat.completions.with_raw_response.create(**request)
                return JudgeReply(completion_text(response.content, response.headers.get("content-type", "")))
            except (*transient, MalformedReply) as error:  # a proxy's error page is as passing as a 502
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
    """What a failure is counted as: the HTTP status and the error's class, the class alone, or what was wrong
    with a reply."""
    if isinstance(error, MalformedReply):
        return error.kind
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
