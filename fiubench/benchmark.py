"""FIUBench on the shared engine: its data as Examples, and its evaluation of one model on a forget and a
retain split (one generation pass and one batched teacher-forced pass per split)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from fiubench import metrics
from fiubench.data import FiuBench, FiuQA, read_records
from unlearning.benchmarks import BENCHMARKS
from unlearning.data import ChatCollator, DataError, Example
from unlearning.evaluate import generate_answers, score_answers
from unlearning.io import atomic_write_json, read_json
from unlearning.metrics.text import keyword_match, rouge_l_recall
from unlearning.synthetic import write_fiubench

log = logging.getLogger(__name__)

PACKAGED_REFUSALS = Path(__file__).with_name("refusals.json")
SPLIT_FILE_VERSION = 1


def load_refusals(data_dir: Path) -> list[str]:
    """``prompt.json``'s ``idk`` list from the data folder (the release's file), else the toolkit's own list."""
    path = data_dir / "prompt.json"
    if not path.is_file():
        path = PACKAGED_REFUSALS
    record = read_records(path)[0]
    refusals = record.get("idk")
    if not isinstance(refusals, list) or not refusals or not all(isinstance(r, str) and r for r in refusals):
        raise DataError(f"{path}: 'idk' must be a non-empty list of refusal strings")
    return refusals


@BENCHMARKS.register("fiubench")
class FiuBenchTask:
    name = "fiubench"

    def __init__(self, data_dir: str | Path, max_identities: int = 400, seed: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.data = FiuBench(self.data_dir, max_identities=max_identities)
        self.seed = seed

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_fiubench(out_dir, **settings)

    table_columns = (
        "run", "method", "forget_split", "forget_rougeL", "retain_rougeL", "forget_em", "retain_em",
        "forget_prob", "retain_prob", "forget_truth", "retain_truth", "model_utility", "forget_quality",
    )

    @staticmethod
    def table_row(run: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
        """One results-table row from a run's ``run.json`` and ``eval/summary.json``."""
        forget, retain = summary["forget"], summary["retain"]
        return {
            "method": run.get("method") or f"stage1_{run['split']}",
            "forget_split": summary["forget_split"],
            "forget_rougeL": forget["rougeL_recall"], "retain_rougeL": retain["rougeL_recall"],
            "forget_em": forget["exact_match"], "retain_em": retain["exact_match"],
            "forget_prob": forget["probability"], "retain_prob": retain["probability"],
            "forget_truth": forget["truth_ratio"], "retain_truth": retain["truth_ratio"],
            "model_utility": summary["model_utility"], "forget_quality": summary["forget_quality"],
        }

    def texts(self) -> list[str]:
        return self.data.texts() + load_refusals(self.data_dir)

    def train_examples(self, split: str) -> list[Example]:
        return [qa.example() for qa in self.data.qas(split)]

    def forget_examples(self, split: str, target: str) -> list[Example]:
        qas = self.data.qas(split)
        if target == "answer":
            return [qa.example() for qa in qas]
        if target == "refusal":
            refusals, rng = load_refusals(self.data_dir), random.Random(self.seed)
            return [qa.example(answer=rng.choice(refusals)) for qa in qas]
        raise ValueError(f"forget target must be 'answer' or 'refusal', got {target!r}")

    def retain_examples(self, forget_split: str) -> list[Example]:
        """FIUBench's retain pool: every identity outside all forget splits, whichever is being forgotten."""
        return [qa.example() for qa in self.data.qas("retain")]

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, load_model: Callable[[], tuple[Any, ChatCollator]], settings: Mapping[str, Any], out_dir: Path,
        reference_eval_dir: Path | None, accelerator: Accelerator | None,
    ) -> dict[str, Any]:
        model = collator = None
        split_settings = {key: settings[key] for key in ("max_new_tokens",)}
        roles = {"forget": settings["forget_split"], "retain": settings["retain_split"]}
        results: dict[str, Any] = {}
        for role, split in roles.items():
            path = out_dir / f"{split}.json"
            cached = read_json(path) if path.is_file() and not settings.get("overwrite", False) else None
            if cached and cached.get("settings") == split_settings and cached.get("version") == SPLIT_FILE_VERSION:
                log.info("%s: %s already evaluated, reusing %s", out_dir.parent.name, split, path)
                results[role] = cached
                continue
            if model is None:
                model, collator = load_model()
            records = self.evaluate_split(self.data.qas(split), model, collator, settings, accelerator, split)
            results[role] = {
                "split": split, "role": role, "version": SPLIT_FILE_VERSION, "settings": split_settings,
                "aggregate": metrics.aggregate_split(records, role), "samples": records,
            }
            if accelerator is None or accelerator.is_main_process:
                atomic_write_json(path, results[role])
        summary = {
            "benchmark": self.name,
            "forget_split": roles["forget"],
            "retain_split": roles["retain"],
            "forget": results["forget"]["aggregate"],
            "retain": results["retain"]["aggregate"],
            "model_utility": metrics.model_utility(results["retain"]["aggregate"]),
            **self._forget_quality(results["forget"], reference_eval_dir),
        }
        if accelerator is None or accelerator.is_main_process:
            atomic_write_json(out_dir / "summary.json", summary)
        return summary

    def _forget_quality(self, forget_result: dict[str, Any], reference_eval_dir: Path | None) -> dict[str, Any]:
        split = forget_result["split"]
        reference = reference_eval_dir / f"{split}.json" if reference_eval_dir else None
        if reference is None or not reference.is_file():
            return {"forget_quality": None, "forget_quality_note": f"no retain-model evaluation of {split} found"}
        value = metrics.forget_quality(forget_result["samples"], read_json(reference)["samples"])
        return {"forget_quality": value, "forget_quality_reference": str(reference)}

    def evaluate_split(
        self, qas: Sequence[FiuQA], model: Any, collator: ChatCollator, settings: Mapping[str, Any],
        accelerator: Accelerator | None, split: str,
    ) -> list[dict[str, Any]]:
        batch_size = settings["batch_size"]
        generations = generate_answers(
            model, collator, [qa.example() for qa in qas], batch_size, settings["max_new_tokens"], accelerator,
            desc=f"{split} generate",
        )
        # One scoring pass: the answer, the paraphrased answer and every perturbed answer of every QA.
        requests, spans = [], []
        for qa in qas:
            start = len(requests)
            requests.append(qa.example())
            requests.append(qa.example(answer=qa.paraphrased_answer))
            requests += [qa.example(answer=p) for p in qa.perturbed_answers]
            spans.append((start, len(requests)))
        scores = score_answers(model, collator, requests, batch_size, accelerator, desc=f"{split} score")
        records = []
        for qa, generation, (start, end) in zip(qas, generations, spans, strict=True):
            answer_nll = scores[start].mean_nll
            paraphrased_nll = scores[start + 1].mean_nll
            perturbed_nlls = [score.mean_nll for score in scores[start + 2:end]]
            records.append({
                "uid": qa.uid,
                "unique_id": qa.unique_id,
                "question": qa.question,
                "answer": qa.answer,
                "generation": generation,
                "rougeL_recall": rouge_l_recall(qa.answer, generation),
                "exact_match": keyword_match(generation, qa.keywords),
                "answer_nll": answer_nll,
                "paraphrased_nll": paraphrased_nll,
                "perturbed_nll": perturbed_nlls,
                "probability": metrics.answer_probability(answer_nll),
                "normalised_probability": metrics.normalised_probability(answer_nll, perturbed_nlls),
                "truth_ratio": metrics.truth_ratio(paraphrased_nll, perturbed_nlls),
            })
        return records

