"""Judgments: ask the judge about each record and store the outcome in it, count how a judged metric fared, and
report it (the summary's status, a table cell). Every benchmark counts failures and unparseable replies the same
way."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unlearning.evaluation.judge.client import Judge, complete_on_main

log = logging.getLogger(__name__)


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


def judge_records(judge: Judge, records: Sequence[dict[str, Any]], prompts: Sequence[str], key: str,
                  parse: Callable[[str], float | None], accelerator: Any | None = None) -> None:
    """Ask the judge one prompt per record and store each judgment in its record under ``key``
    (``store_judgment``)."""
    if len(records) != len(prompts):
        raise ValueError(f"{len(records)} records but {len(prompts)} judge prompts")
    for record, judgment in zip(records, judge_all(judge, prompts, parse, accelerator), strict=True):
        store_judgment(record, key, judgment)


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
