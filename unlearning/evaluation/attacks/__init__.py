"""Attacks on an unlearned model: is the knowledge gone, or only hidden from the exact inputs and weights that were
evaluated? Each attack is a setting of the evaluation (``eval_everything.bash attack=quantize_4bit``):

- ``quantize_8bit``, ``quantize_4bit``: the model's weights (its LoRA merged first) rounded to 8 or 4 bits
  (``attacks.quantize``); every part is evaluated on the quantized model.
- ``image_crop``, ``image_rotate``, ``image_blur``, ``image_noise``, ``image_jpeg``, ``image_rephrase`` (each image
  one of those, drawn with the seed): the forget parts' questions with transformed images (``attacks.images``).
- ``text_only``: the forget parts' questions asked without their images (text-only leakage).
- ``relearn``: one attack per budget in ``attacks.relearn.steps`` (``relearn_<steps>``): the model fine-tuned for
  that many steps on one half of the forget set's units, its forget parts evaluated and summarised on the other half
  (``unlearning.evaluation.attacks.relearn``); budget 0 is the model before relearning, on the same half.

An attacked evaluation writes its parts and summary under ``eval/attacks/<name>/``, never over the unattacked ones;
its parts are cached and fingerprinted like any part, the attack's settings in the fingerprint. Input attacks
transform only the parts a benchmark names as its forget parts (``benchmark.robustness.parts``); its other parts
are the unattacked results, reused from ``eval/`` (or computed there first). The reference model is evaluated
under the same attack (``eval/attacks/<name>/`` of the reference run): it is the baseline the table compares with.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from unlearning.compat import Compat
from unlearning.data.examples import Example, ImageSource
from unlearning.data.images import image_key
from unlearning.evaluation.attacks.images import MIXED, TRANSFORMS, ImageOptions, transform_image
from unlearning.evaluation.attacks.quantize import QuantizeOptions, backend_fingerprint, quantize, resolve_backend
from unlearning.evaluation.attacks.relearn import (
    PREFIX as RELEARN,
)
from unlearning.evaluation.attacks.relearn import (
    Relearn,
    RelearnedModel,
    RelearnError,
    RelearnOptions,
    budget_name,
    budget_of,
    evaluation_half,
    relearned_compute,
)
from unlearning.evaluation.runner import EvalContext, Evaluation, LazyModel, ModelLoader, Part, cached_result
from unlearning.runs.io import CorruptFile, read_json

log = logging.getLogger(__name__)

ATTACKS_DIR = "attacks"
QUANTIZE = {"quantize_8bit": 8, "quantize_4bit": 4}
IMAGES = {f"image_{name}": name for name in (*TRANSFORMS, MIXED)}
TEXT_ONLY = "text_only"
ATTACK_NAMES = (*QUANTIZE, *IMAGES, TEXT_ONLY)
DEFAULT_PARTS = ("forget",)
FILE_VERSION = 1


class AttackError(ValueError):
    """An attack that cannot be run as asked; the message says what to pass."""


KNOWN = f"{', '.join(ATTACK_NAMES)}, {RELEARN} (or {RELEARN}_<steps>)"


@dataclass(frozen=True)
class Attack:
    """One attack and its settings."""

    name: str
    quantize: QuantizeOptions = dataclasses.field(default_factory=QuantizeOptions)
    images: ImageOptions = dataclasses.field(default_factory=ImageOptions)
    relearn: Relearn | None = None  # a relearning budget (``relearn_<steps>``)

    @property
    def on_model(self) -> bool:
        """Whether the attack changes the model (every part attacked) rather than the forget parts' inputs."""
        return self.name in QUANTIZE

    def fingerprint(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        """What an attacked part's numbers rest on besides the part's own settings."""
        out: dict[str, Any] = {"name": self.name, "version": FILE_VERSION}
        if self.name in QUANTIZE:
            backend = resolve_backend(self.quantize.backend, device)
            out.update(bits=QUANTIZE[self.name], **backend_fingerprint(backend),
                       **({"group_size": self.quantize.group_size} if backend == "torchao" else {}))
        elif self.name in IMAGES:
            out["images"] = dataclasses.asdict(self.images)
        elif self.relearn is not None:
            out["relearn"] = self.relearn.fingerprint()
        return out


def attacked_weights(weights: str | None, fingerprint: Mapping[str, Any]) -> str:
    """The model key of an attacked evaluation's parts: the weights under the attack. Kept out of the parts' own
    fingerprints, so a benchmark's metrics against the reference (which compare those) find the reference's results
    under the same attack."""
    return f"{weights}+attack={json.dumps(fingerprint, sort_keys=True)}"


def parse_attacks(value: Any, settings: Mapping[str, Any] | None = None) -> list[Attack]:
    """The attacks ``attack=`` names (null, a name or a list), with ``attacks.*`` settings; an unknown name lists
    the known ones. ``relearn`` stands for one attack per budget of ``attacks.relearn.steps``."""
    if value is None or value == []:
        return []
    names = [value] if isinstance(value, str) else list(value)
    settings = dict(settings or {})
    unknown = sorted(set(settings) - {"quantize", "images", "relearn"})
    if unknown:
        raise AttackError(f"attacks.{unknown[0]}: unknown settings; attacks has quantize, images and relearn")
    try:
        quantize_options = QuantizeOptions(**(settings.get("quantize") or {}))
        image_settings = dict(settings.get("images") or {})
        for key in ("crop_scale", "rotate_degrees"):
            if key in image_settings:
                image_settings[key] = tuple(image_settings[key])
        image_options = ImageOptions(**image_settings)
        relearn_settings = dict(settings.get("relearn") or {})
        if "steps" in relearn_settings and not isinstance(relearn_settings["steps"], int):
            relearn_settings["steps"] = tuple(relearn_settings["steps"])
        relearn_options = RelearnOptions(**relearn_settings)
    except (TypeError, RelearnError) as error:
        raise AttackError(f"attacks settings: {error}") from error
    attacks = []
    for name in names:
        budgets = relearn_options.steps if name == RELEARN else [budget_of(name)]
        if budgets != [None]:
            attacks += [Attack(budget_name(steps), quantize_options, image_options, Relearn(steps, relearn_options))
                        for steps in budgets]
            continue
        if name not in ATTACK_NAMES:
            close = difflib.get_close_matches(str(name), [*ATTACK_NAMES, RELEARN], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise AttackError(f"unknown attack {name!r}; known attacks: {KNOWN}.{hint}")
        attacks.append(Attack(name, quantize_options, image_options))
    if len({a.name for a in attacks}) != len(attacks):
        raise AttackError(f"attack lists an attack twice: {names}")
    return attacks


def attack_dir(eval_dir: Path, attack: Attack) -> Path:
    """Where an evaluation folder's results under ``attack`` go."""
    return eval_dir / ATTACKS_DIR / attack.name


class ExampleTransform:
    """An input attack on examples: every image transformed (or dropped), each source transformed once and the
    result kept (bytes: caches key it by content). Applying it twice changes nothing more."""

    def __init__(self, attack: Attack) -> None:
        self.attack = attack
        self._done: dict[Any, bytes] = {}
        self._outputs: set[bytes] = set()

    def _image(self, source: ImageSource | None) -> ImageSource | None:
        if source is None or self.attack.name == TEXT_ONLY:
            return None
        if isinstance(source, bytes) and source in self._outputs:
            return source
        key = image_key(source)
        if key not in self._done:
            out = transform_image(source, IMAGES[self.attack.name], self.attack.images)
            self._done[key] = out
            self._outputs.add(out)
        return self._done[key]

    def __call__(self, example: Example) -> Example:
        shots = tuple(dataclasses.replace(shot, image=self._image(shot.image)) for shot in example.shots)
        return dataclasses.replace(example, image=self._image(example.image), shots=shots)


def attacked_collator(collator: Any, transform: Callable[[Example], Example]) -> Any:
    """A copy of ``collator`` whose inference entry points see every example through ``transform`` (its caches
    shared: transformed images are keyed by content)."""
    import copy

    attacked = copy.copy(collator)
    attacked.example_transform = transform
    return attacked


def attacked_loader(load: ModelLoader, attack: Attack, owned: bool, device: torch.device | str) -> ModelLoader:
    """The loader of the model under ``attack``: quantized (a copy when ``load`` returns a model it keeps for other
    runs, ``owned`` False), else the model as it is."""
    if not attack.on_model:
        return load

    def quantized() -> tuple[Any, Any]:
        import copy

        model, collator = load()
        return quantize(model if owned else copy.deepcopy(model), QUANTIZE[attack.name], attack.quantize,
                        device), collator

    return quantized


def attacked_evaluation(evaluation: Evaluation, attack: Attack, attacked_parts: Sequence[str], unattacked_dir: Path,
                        compat: Compat, model: str | None, accelerator: Accelerator | None,
                        device: torch.device | str = "cpu") -> Evaluation:
    """``evaluation`` under ``attack`` (its parts keyed by ``attacked_weights``): for an input attack the attacked
    parts see transformed examples and the others are the unattacked results (``unattacked_dir``), reused or
    computed there. Under a relearning budget the attacked parts are computed on the relearned model (budget 0: the
    unattacked results) and summarised on the evaluation half. The summary records the attack; a reference evaluated
    under other attack settings is not compared with."""
    if attack.relearn is not None and attack.relearn.split is None:
        raise AttackError(f"attack {attack.name}: the forget set was not split into its relearned and evaluated "
                          "halves")
    fingerprint = attack.fingerprint(device)
    keys = set(evaluation.parts) if attack.on_model else set(attacked_parts) & set(evaluation.parts)
    if not keys:
        raise AttackError(f"attack {attack.name}: none of the parts {sorted(attacked_parts)} (benchmark.robustness."
                          f"parts) is among this evaluation's parts {sorted(evaluation.parts)}")
    relearn, relearned = attack.relearn, None
    if relearn is not None and relearn.split is not None:
        try:
            evaluation = evaluation_half(evaluation, relearn.split, relearn.steps, relearn.strata)
        except RelearnError as error:
            raise AttackError(f"attack {attack.name}: {error}") from error
        relearned = RelearnedModel(relearn, accelerator) if relearn.steps else None
    transform = None if attack.on_model or relearn is not None else ExampleTransform(attack)
    parts: dict[str, Part] = {}
    for key, part in evaluation.parts.items():
        if key in keys and relearned is not None:  # relearn budget 0 falls through: the unattacked results
            parts[key] = dataclasses.replace(part, compute=relearned_compute(part.compute, relearned))
        elif key in keys and relearn is None:
            parts[key] = dataclasses.replace(part, compute=_attacked_compute(part, transform))
        else:
            parts[key] = dataclasses.replace(part, compute=_unattacked_compute(part, unattacked_dir, compat, model,
                                                                               accelerator))

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        note = _reference_differs(reference_dir, fingerprint)
        if note:
            log.warning("%s", note)
        own = evaluation.summarize(results, None if note else reference_dir)
        return {**own, "attack": fingerprint, "attacked_parts": sorted(keys),
                **({"attack_reference_note": note} if note else {})}

    return dataclasses.replace(evaluation, parts=parts, summarize=summarize)


def _reference_differs(reference_dir: Path | None, fingerprint: Mapping[str, Any]) -> str | None:
    """Why the reference's results under this attack cannot be compared with (evaluated under other settings)."""
    path = reference_dir / "summary.json" if reference_dir else None
    if path is None or not path.is_file():
        return None
    try:
        theirs = read_json(path).get("attack")
    except CorruptFile:
        return None
    if theirs is not None and theirs != json.loads(json.dumps(fingerprint)):
        return (f"{path} was evaluated under other settings of the attack ({theirs}); metrics against the reference "
                "are left out: evaluate the reference run under this attack again")
    return None


def _attacked_compute(part: Part, transform: ExampleTransform | None) -> Callable[[EvalContext], dict[str, Any]]:
    if transform is None:
        return part.compute

    def compute(context: EvalContext) -> dict[str, Any]:
        def load() -> tuple[Any, Any]:
            net, collator = context.model.get()
            return net, attacked_collator(collator, transform)

        return part.compute(dataclasses.replace(context, model=_Shared(context.model, load)))

    return compute


class _Shared(LazyModel):
    """The attacked view of an evaluation's lazily loaded model: loaded once, by the evaluation's own loader."""

    def __init__(self, inner: LazyModel, load: ModelLoader) -> None:
        super().__init__(load)
        self._inner = inner

    @property
    def loaded(self) -> bool:
        return self._inner.loaded


def _unattacked_compute(part: Part, unattacked_dir: Path, compat: Compat, model: str | None,
                        accelerator: Accelerator | None) -> Callable[[EvalContext], dict[str, Any]]:
    def compute(context: EvalContext) -> dict[str, Any]:
        result = cached_result(unattacked_dir / f"{part.name}.json", part.key(compat, model), False,
                               lambda: part.compute(context), accelerator, context.judge is not None)
        return {key: value for key, value in result.items() if key != "fingerprint"}

    return compute
