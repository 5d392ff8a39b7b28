"""The judge's settings (``eval.judge.*``), checked before work starts, and whether an endpoint is configured.

The key comes from the environment only (``OPENAI_API_KEY`` by default, its name configurable), the endpoint
from ``OPENAI_BASE_URL`` or the config; the settings hold the variable's *name*, never a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unlearning.runs.console import variable_name
from unlearning.runs.io import SECRET_VALUE

ENABLED = {"auto": "auto", "true": True, "false": False}
LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-]{32,}")  # a server may quote a key of any provider's shape


@dataclass
class JudgeSettings:
    enabled: bool | str = "auto"  # auto: judge when an endpoint is configured, skip otherwise; true: require; false
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable holding the key
    system_prompt: str | None = None
    max_tokens: int | None = 64  # None: no cap sent (the API's default)
    temperature: float | None = 0.0  # None: the API's default (not sent)
    prompts: str | None = None  # a file of judge prompt templates, for benchmarks that read one (SafeEraser)
    concurrency: int = 8
    max_retries: int = 5
    backoff_seconds: float = 2.0
    timeout_seconds: float = 60.0
    cache_dir: str = ".judge_cache"
    max_failed: float = 0.0  # the fraction of a judged metric's requests that may fail with it still complete

    def __post_init__(self) -> None:
        self.enabled = _enabled(self.enabled)
        if not variable_name(self.api_key_env):
            # never echo the value: it may be the key itself, pasted in the wrong place
            raise ValueError("eval.judge.api_key_env must be the *name* of an environment variable (such as "
                             "OPENAI_API_KEY), not its value; the value given is not shown because it may be a key")
        if not 0.0 <= float(self.max_failed) < 1.0:
            raise ValueError(f"eval.judge.max_failed is a fraction in [0, 1), got {self.max_failed!r}")
        if self.concurrency < 1 or self.max_retries < 0 or (self.max_tokens is not None and self.max_tokens < 1):
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


class JudgeUnavailable(RuntimeError):
    """Judging was required (enabled: true) but no endpoint is configured."""


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
