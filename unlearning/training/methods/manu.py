"""MANU, modality-aware neuron unlearning (Liu et al., ACL 2025): training-free pruning of the MLP neurons whose
activations are much stronger on the forget set than on the retain set, chosen separately for each modality.

For every output unit ("neuron") of the MLP projections of the last few layers, four activation statistics are
measured on the forget and on the retain examples (activations clamped to +-1e3): mean |a|, the fraction of
|a| > ``threshold``, the standard deviation and the root mean square. Each neuron's score is

    S = sum_m w_m * (I_m(forget) / (I_m(retain) + epsilon) - 1)

and, within each modality (the vision tower's MLPs on the image+text forward, the language model's MLPs on a
text-only forward), the top ``percent`` % of neurons across all its hooked modules are pruned: the output row of
the projection's weight (and bias) is zeroed. For an up/gate/fc1 row that silences an intermediate neuron; for a
down/fc2 row, one channel of the layer's residual update. The toolkit runs it as a one-off edit (``trains = False``):
its statistics are the run's preparation pass, the edited model its checkpoint. Source and deliberate differences:
docs/methods.md (section manu).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from unlearning.data.examples import Example
from unlearning.data.streams import RANDOM, StreamUse, with_modality
from unlearning.training.hidden_states import capture, find_modules
from unlearning.training.methods.base import METHODS, Progress, StreamScores

log = logging.getLogger(__name__)

METRICS = ("abs", "freq", "var", "rms")
MODALITIES = ("vision", "language")
CLAMP = 1e3  # the original clamps activations to +-1e3 before its statistics
SEP = "|"  # statistics are cached as "<modality>|<stream>|<metric>|<module path>"


def activation_statistics(values: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """Per-neuron statistics of activations ``values`` (N positions, D neurons) over the positions: mean |a|, the
    fraction of |a| > threshold, the (population) standard deviation (the paper's "var") and sqrt(mean a^2)."""
    a = values.detach().float().clamp(-CLAMP, CLAMP)
    return {
        "abs": a.abs().mean(0),
        "freq": (a.abs() > threshold).float().mean(0),
        "var": a.std(0, correction=0),
        "rms": a.square().mean(0).sqrt(),
    }


def neuron_scores(forget: Mapping[str, torch.Tensor], retain: Mapping[str, torch.Tensor],
                  weights: Mapping[str, float], epsilon: float) -> torch.Tensor:
    """S = sum_m w_m (I_m^F / (I_m^R + epsilon) - 1) per neuron; metrics weighted 0 are skipped (the fork's
    reading: they add nothing and cannot turn a score into NaN)."""
    total: torch.Tensor | None = None
    for metric in METRICS:
        weight = float(weights.get(metric, 0.0))
        if weight == 0:
            continue
        term = weight * (forget[metric] / (retain[metric] + epsilon) - 1.0)
        total = term if total is None else total + term
    if total is None:
        raise ValueError(f"manu: every metric weight is 0 (weights {dict(weights)}): no neuron can be scored")
    return total


def top_percent(scores: Mapping[str, torch.Tensor], percent: float) -> dict[str, torch.Tensor]:
    """Boolean masks selecting the top ``percent`` % of the neurons of all modules together: k = int(p/100 * N)
    (at least 1 when p > 0), then every neuron scoring at least the k-th largest score (ties kept, as the original)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"manu: percent must be within [0, 100], got {percent}")
    if not scores:
        return {}
    if percent == 0:
        return {name: torch.zeros_like(score, dtype=torch.bool) for name, score in scores.items()}
    pooled = torch.cat([score.flatten() for score in scores.values()])
    k = min(max(1, int(percent * pooled.numel() / 100)), pooled.numel())
    threshold = pooled.topk(k).values[-1]
    return {name: score >= threshold for name, score in scores.items()}


class RunningStatistics:
    """Statistics of each module computed per batch over its positions and averaged over the batches (each batch
    weighing the same, as the fork), so only one batch's activations are ever held."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.sums: dict[str, dict[str, torch.Tensor]] = {}
        self.counts: dict[str, int] = {}

    def add(self, path: str, values: torch.Tensor) -> None:
        """``values``: (N, D) activations of one batch at the positions that count; N = 0 adds nothing."""
        if values.shape[0] == 0:
            return
        batch = activation_statistics(values, self.threshold)
        sums = self.sums.setdefault(path, {})
        for metric, value in batch.items():
            sums[metric] = value if metric not in sums else sums[metric] + value
        self.counts[path] = self.counts.get(path, 0) + 1

    def means(self) -> dict[str, dict[str, torch.Tensor]]:
        return {path: {metric: value.cpu() / self.counts[path] for metric, value in sums.items()}
                for path, sums in self.sums.items()}


def block_lists(module: torch.nn.Module, prefix: str) -> list[tuple[str, torch.nn.Module]]:
    """The transformer blocks under ``module`` (named ``prefix``), in forward order: the items of every ModuleList
    whose items all have an ``mlp`` (CLIP/SigLIP ``encoder.layers``, Qwen2-VL's ``blocks``, a decoder's ``layers``;
    Mllama's local then global vision layers)."""
    blocks = []
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) and all(hasattr(b, "mlp") for b in child):
            base = f"{prefix}.{name}" if name else prefix
            blocks += [(f"{base}.{i}", block) for i, block in enumerate(child)]
    return blocks


def mlp_projections(blocks: Sequence[tuple[str, torch.nn.Module]], last: int) -> list[str]:
    """Paths of the linear projections inside the ``mlp`` of the last ``last`` blocks (all of them when fewer):
    gate/up/down_proj for Llama-like MLPs (Phi-3's fused gate_up_proj too), fc1/fc2 for CLIP-like ones."""
    paths = []
    for path, block in blocks[-last:] if last > 0 else []:
        linears = [name for name, child in block.mlp.named_children() if isinstance(child, torch.nn.Linear)]
        if not linears:
            raise ValueError(f"manu: {path}.mlp has no linear projection to prune")
        paths += [f"{path}.mlp.{name}" for name in linears]
    return paths


def chunks(examples: Sequence[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(examples), size):
        yield list(examples[start:start + size])


def spread(examples: Sequence[Example], count: int) -> list[Example]:
    """``count`` examples evenly spaced over the stream (all of them when it has fewer), in stream order: a
    deterministic stand-in for the original's shuffled retain loader stopped after as many batches as the forget
    set has."""
    if count >= len(examples):
        return list(examples)
    return [examples[(i * len(examples)) // count] for i in range(count)]


@METHODS.register("manu")
@dataclass
class ModalityAwareNeuronUnlearning:
    percent: float = 2.0  # % of each modality's hooked neurons pruned (the authors' --prune_percent; the fork: 10)
    language_layers: int = 3  # the language model's last N blocks (fewer when it has fewer)
    vision_layers: int = 3  # the vision tower's last N blocks; 0: language neurons only
    vision_tower: Sequence[str] = ()  # module paths of the vision tower (the model config's modules.vision_tower)
    text_only_language: bool = True  # language statistics on the examples without their images (the original's)
    threshold: float = 0.1  # |a| above which a neuron counts as firing (I_freq)
    epsilon: float = 1e-5
    weights: Mapping[str, float] = field(default_factory=lambda: {"abs": 2.0, "freq": 0.0, "var": 2.0, "rms": 2.0})

    trains = False
    needs_reference = False
    # what the statistics depend on; percent, weights and epsilon only rank them (a sweep over percent reuses them)
    preparation_settings = ("language_layers", "vision_layers", "vision_tower", "text_only_language", "threshold")

    def __post_init__(self) -> None:
        self.weights = {str(k): float(v) for k, v in dict(self.weights).items()}
        unknown = set(self.weights) - set(METRICS)
        if unknown:
            raise ValueError(f"manu: unknown metric weights {sorted(unknown)} (metrics: {', '.join(METRICS)})")
        if isinstance(self.vision_tower, str):
            self.vision_tower = (self.vision_tower,)
        self.vision_tower = tuple(str(path) for path in self.vision_tower or ())
        if self.language_layers < 1 or self.vision_layers < 0:
            raise ValueError("manu: language_layers must be >= 1 and vision_layers >= 0")
        top_percent({}, self.percent)  # checks the range before any model loads
        self.masks: dict[str, torch.Tensor] = {}
        self.modality: dict[str, str] = {}

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"), StreamUse("retain", RANDOM))

    def loss(self, policy: StreamScores, reference: StreamScores | None, progress: Progress
             ) -> tuple[torch.Tensor, dict[str, float]]:
        raise RuntimeError("manu is training-free (trains = False): it edits the weights once and has no loss")

    def hooked_modules(self, model: torch.nn.Module, language_model: Sequence[str]) -> dict[str, list[str]]:
        """Full module paths of the projections whose neurons compete, by modality."""
        if not language_model:
            raise ValueError("manu: the model config names no language_model module prefix")
        prefix = language_model[0]
        (decoder,) = find_modules(model, [prefix]).values()
        language = mlp_projections(block_lists(decoder, prefix), self.language_layers)
        if not language:
            raise ValueError(f"manu: no transformer blocks with an mlp found under {prefix!r}")
        vision: list[str] = []
        if self.vision_layers and self.vision_tower:
            blocks = []
            for path, tower in find_modules(model, list(self.vision_tower)).items():
                blocks += block_lists(tower, path)
            vision = mlp_projections(blocks, self.vision_layers)
        return {"vision": vision, "language": language}

    def prepare(self, preparation: Any) -> dict[str, torch.Tensor]:
        """Statistics of every hooked neuron on the forget examples and on as many retain batches as the forget
        set has, by modality: vision on the image+text forward, language on the text-only one."""
        modules = self.hooked_modules(preparation.model, preparation.language_model)
        prefix = f"{preparation.language_model[0]}."
        language = {path.removeprefix(prefix): path for path in modules["language"]}  # Preparation.forward's names
        forget = list(preparation.streams["forget"])
        size = preparation.batch_size
        retain = spread(preparation.streams["retain"], math.ceil(len(forget) / size) * size)
        statistics: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for stream, examples in (("forget", forget), ("retain", retain)):
                vision_stats, language_stats = RunningStatistics(self.threshold), RunningStatistics(self.threshold)
                bar = tqdm(list(chunks(examples, size)), desc=f"manu {stream}",
                           disable=None if preparation.accelerator.is_local_main_process else True)
                for part in bar:
                    states = {}
                    if modules["vision"] or not self.text_only_language:  # the image+text forward
                        joint = [] if self.text_only_language else list(language)
                        with capture(preparation.model, modules["vision"]) as caught:
                            _, states = preparation.forward(preparation.collator(part), joint)
                        for path, values in caught.items():
                            vision_stats.add(path, values.reshape(-1, values.shape[-1]))
                    if self.text_only_language:
                        _, states = preparation.forward(preparation.collator(with_modality(part, "unimodal")),
                                                        list(language))
                    for layer, state in states.items():
                        language_stats.add(language[layer], state.positions("attention"))
                for modality, running in (("vision", vision_stats), ("language", language_stats)):
                    for path, metrics in running.means().items():
                        for metric, value in metrics.items():
                            statistics[SEP.join((modality, stream, metric, path))] = value
        return statistics

    def use_statistics(self, statistics: Mapping[str, torch.Tensor]) -> None:
        """Scores from the forget and retain statistics, then each modality's top ``percent`` %."""
        table: dict[tuple[str, str], dict[str, dict[str, torch.Tensor]]] = {}
        for key, value in statistics.items():
            modality, stream, metric, path = key.split(SEP, 3)
            table.setdefault((modality, path), {}).setdefault(stream, {})[metric] = value
        self.masks, self.modality = {}, {}
        for modality in MODALITIES:
            scores = {}
            for (kind, path), streams in table.items():
                if kind != modality:
                    continue
                if set(streams) != {"forget", "retain"}:
                    log.warning("manu: %s saw %s examples only (no images in the other stream?); not pruned",
                                path, ", ".join(streams))
                    continue
                scores[path] = neuron_scores(streams["forget"], streams["retain"], self.weights, self.epsilon)
            if not scores and modality == "vision" and self.vision_layers:
                log.warning("manu: no vision statistics (no vision tower configured, or no images): language only")
            for path, mask in top_percent(scores, self.percent).items():
                self.masks[path], self.modality[path] = mask, modality

    def edit(self, model: torch.nn.Module) -> dict[str, Any]:
        """Zero the output rows (weight and bias) of the selected neurons; the counts go into run.json."""
        if not self.masks:
            raise RuntimeError("manu: no neurons were scored (use_statistics was not given the preparation's)")
        pruned: dict[str, int] = {}
        totals = dict.fromkeys(MODALITIES, 0)
        for path, module in find_modules(model, list(self.masks)).items():
            mask = self.masks[path]
            if mask.shape != (module.weight.shape[0],):
                raise ValueError(f"manu: {path} has {module.weight.shape[0]} output rows, its mask {tuple(mask.shape)}")
            rows = mask.to(module.weight.device)
            module.weight[rows] = 0
            if getattr(module, "bias", None) is not None:
                module.bias[rows] = 0
            pruned[path] = int(mask.sum())
            totals[self.modality[path]] += pruned[path]
        log.info("manu pruned %d vision and %d language neurons", totals["vision"], totals["language"])
        return {"pruned": totals, "modules": pruned}
