"""The evaluation command under attacks (``attack=``): which attacks, which parts they transform, the reference
model they are also run on, and the robustness tables written after them (``unlearning.evaluation.attacks``).
The relearning attack's learning rate defaults to the benchmark recipe's, and its forget set is split once the
benchmark is read (``with_benchmark``), before any model loads."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from omegaconf import OmegaConf

from unlearning.evaluation.attacks import (
    DEFAULT_PARTS,
    Attack,
    AttackError,
    attack_dir,
    attacked_evaluation,
    attacked_loader,
    attacked_weights,
    parse_attacks,
)
from unlearning.evaluation.attacks.relearn import RelearnError, split_forget, unit_of
from unlearning.evaluation.robustness import write_robustness
from unlearning.evaluation.runner import EvalSettings, Evaluation, ModelLoader, run_evaluation
from unlearning.evaluation.selection import ValidationSplit
from unlearning.recipes.slices import EvalConfig
from unlearning.runs.folders import find_finetune_run

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@dataclass(frozen=True)
class AttackPlan:
    """``attack=`` and ``attacks.*`` of the eval config, with ``benchmark.robustness`` (the parts an input attack
    transforms, the reference model's split)."""

    attacks: tuple[Attack, ...]
    parts: tuple[str, ...]
    reference_split: str | None
    table_dir: Path
    forget_split: str | None = None  # the split the relearning attack halves
    modules: Mapping[str, Sequence[str]] | None = None  # model.modules and model.lora_targets: what relearning trains
    lora_targets: tuple[str, ...] = ()
    relearn_strata: tuple[str, ...] = ("forget",)  # robustness.relearn_strata: the forget units' bootstrap strata;
    # empty: the evaluation's data is held out from the forget set, every unit is evaluated after relearning

    def __bool__(self) -> bool:
        return bool(self.attacks)

    @classmethod
    def from_config(cls, cfg: Any, config: EvalConfig) -> AttackPlan:
        settings = dict(_plain(cfg.get("attacks")) or {})
        table_dir = Path(settings.pop("table_dir", None) or "results")
        if isinstance(settings.get("relearn"), dict) and settings["relearn"].get("lr") is None:
            settings["relearn"] = {**settings["relearn"], "lr": recipe_lr(cfg, bool(settings["relearn"].get("lora")))}
        attacks = tuple(parse_attacks(_plain(cfg.get("attack")), settings))
        robustness = _plain(cfg.benchmark.get("robustness")) or {}
        parts = tuple(robustness.get("parts") or DEFAULT_PARTS)
        reference_split = robustness.get("reference_split") or config.reference_split
        plan = cls(attacks, parts, reference_split, table_dir, config.forget_split, config.model.modules,
                   tuple(config.model.lora_targets), tuple(robustness.get("relearn_strata", ("forget",)) or ()))
        if attacks and not config.reference_run and not reference_split:
            raise AttackError(
                f"attack={','.join(a.name for a in attacks)}: benchmark {config.benchmark.name!r} names no reference "
                "model to run the attacks on as their baseline; pass reference_run=<run folder> (the model "
                "forgetting started from: its finetune run, or the run folder model_path=<model> made for it), "
                "or set benchmark.robustness.reference_split=<the split of its finetune run>")
        return plan

    def with_benchmark(self, benchmark: Any) -> AttackPlan:
        """The plan with the relearning attacks' forget set split (the benchmark's forget stream of the evaluated
        forget split, halved by its units: ``benchmark.unit_of`` where it defines one)."""
        relearns = [attack.relearn for attack in self.attacks if attack.relearn is not None]
        if not relearns:
            return self
        options = relearns[0].options
        if options.lr is None:
            raise AttackError(f"attack relearn: benchmark {benchmark.name!r} has no recipe learning rate to relearn "
                              "with; pass attacks.relearn.lr=<rate>")
        try:
            split = split_forget(benchmark.stream("forget", self.forget_split), options.fraction, options.seed,
                                 getattr(benchmark, "unit_of", unit_of))
        except RelearnError as error:
            raise AttackError(f"attack relearn on {benchmark.name} {self.forget_split}: {error}") from error
        log.info("relearn: %d units relearned (%d examples), %d evaluated; budgets %s", len(split.relearn_units),
                 len(split.examples), len(split.eval_units), ", ".join(str(r.steps) for r in relearns))
        attacks = tuple(attack if attack.relearn is None else dataclasses.replace(attack, relearn=dataclasses.replace(
            attack.relearn, split=split, modules=self.modules, lora_targets=self.lora_targets,
            strata=self.relearn_strata))
            for attack in self.attacks)
        return dataclasses.replace(self, attacks=attacks)

    def reference(self, config: EvalConfig) -> Path:
        """The reference run the attacks are also run on (``reference_run``, else the finetune run on
        ``reference_split``); a missing one says what to pass."""
        if config.reference_run:
            return Path(config.reference_run)
        return find_finetune_run(config.group_dir, self.reference_split, "reference model of the attacks",
                                 "reference_run")

    def with_reference(self, config: EvalConfig, runs: list[Path], reference: Path | None
                       ) -> tuple[list[Path], Path]:
        """The runs with the attacks' reference first (evaluated under each attack before the others)."""
        reference = reference or self.reference(config)
        return [reference] + [run for run in runs if run.resolve() != reference.resolve()], reference

    def run(self, benchmark: str, evaluation: Evaluation, load: ModelLoader, settings: EvalSettings, out_dir: Path,
            reference: Path | None, accelerator: Accelerator, weights: str, owned: bool,
            metrics: Callable[[dict[str, Any]], dict[str, Any]], summary_file: str) -> list[dict[str, Any]]:
        """One model's evaluation under every attack, each in ``<out_dir>/attacks/<name>/``. Checkpoints are chosen
        on unattacked numbers: an attacked evaluation holds out no validation split (no ``selection.json``)."""
        settings = dataclasses.replace(settings, selection=ValidationSplit(validation_fraction=0))
        summaries = []
        for attack in self.attacks:
            log.info("attack %s: evaluating into %s", attack.name, attack_dir(out_dir, attack))
            attacked = attacked_evaluation(evaluation, attack, self.parts, out_dir, settings.compat, weights,
                                           accelerator, accelerator.device)
            summaries.append(run_evaluation(
                benchmark, attacked, attacked_loader(load, attack, owned, accelerator.device), settings,
                attack_dir(out_dir, attack), attack_dir(reference / "eval", attack) if reference else None,
                accelerator, attacked_weights(weights, attack.fingerprint(accelerator.device)),
                metrics if attack.relearn is None else without_counts(metrics), summary_file))
        return summaries

    def write_tables(self, run_root: str | Path, accelerator: Accelerator) -> None:
        if accelerator.is_main_process:
            for path in write_robustness(Path(run_root), self.table_dir):
                log.info("robustness table: %s", path)


def recipe_lr(cfg: Any, lora: bool) -> float | None:
    """The relearning attack's default learning rate: the rate the benchmark's recipe learns the facts with (its
    finetune ``lr``, full finetuning) or, with a LoRA, the rate its forgetting trains LoRA adapters with."""
    recipe = cfg.benchmark.get("recipe") or {}
    stage = recipe.get("forget" if lora else "finetune") or {}
    lr = stage.get("lr")
    return None if lr is None else float(lr)


def without_counts(metrics: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Typed metrics without sample counts: a relearning summary's counts are the whole forget set's, its forget
    metrics the evaluation half's (its units are under ``relearn``)."""

    def typed(summary: dict[str, Any]) -> dict[str, Any]:
        out = metrics(summary)
        for columns in out.values():
            for metric in columns.values():
                metric["n"] = None
        return out

    return typed
