"""One mechanism for reproducing an original code's number-changing behaviours ("compat").

Our default is the correct behaviour. A benchmark declares each original behaviour once, as a named ``Switch``
in ``<benchmark>/compat.py``: what it changes, its row(s) in docs/fidelity.md, the stages it acts on, and the
config values it sets when on. On the command line ``compat=official`` turns every switch of the run's benchmark
on, and ``compat.<switch>=true|false`` sets one alone (it wins over the mode):

    bash scripts/eval_everything.bash compat=official
    bash scripts/eval_everything.bash compat.cut_at_first_period=true
    bash scripts/forget_lora.bash compat=official compat.file_order=false

Code asks the run's ``Compat`` by the switch's name (``compat.cut_at_first_period``). A switch that sets config
values sets them before the config is validated; a value given on the command line that a switch on would change
is an error naming the switch to turn off. A training run's identity and an evaluation part's fingerprint hold
exactly the switches that are on at their stage, so runs and results under other switches never mix.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

MODES = ("default", "official")
STAGES = ("train", "eval", "curate")  # curate: data curation commands (EFUF's)
_ABSENT = object()

# What several originals share, in the engine's method settings (``sets`` of their switches): KL averaged over every
# position of the retain batch (kl, and kl_pd's base), and PO's one token mean over refusals and retain answers.
KL_OVER_ALL_POSITIONS = {"method.reduction": "all_positions", "method.base.reduction": "all_positions"}
PO_JOINT_MEAN = {"method.joint": True, "method.base.joint": True}


@dataclass(frozen=True)
class Switch:
    """One original behaviour: ``name`` (how code and the command line name it), ``what`` it changes, its
    docs/fidelity.md row(s), the ``stages`` it acts on, the config values it ``sets`` when on (dotted keys; a key
    the run's config does not have is skipped, e.g. a KL setting in a GA run), only where ``when`` holds
    (dotted key -> the values it may have)."""

    name: str
    what: str
    fidelity: tuple[str, ...]
    stages: tuple[str, ...]
    sets: Mapping[str, Any] = field(default_factory=dict)
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"compat switch {self.name!r}: a name must be an identifier")
        if not self.fidelity:
            raise ValueError(f"compat switch {self.name!r} names no docs/fidelity.md row")
        unknown = set(self.stages) - set(STAGES)
        if not self.stages or unknown:
            raise ValueError(f"compat switch {self.name!r}: stages must be among {STAGES}, got {self.stages}")

    def applies(self, cfg: DictConfig) -> bool:
        return all(OmegaConf.select(cfg, key, default=_ABSENT) in allowed for key, allowed in self.when.items())


_DECLARED: dict[str, tuple[Switch, ...]] = {}


def declare(benchmark: str, *switches: Switch) -> tuple[Switch, ...]:
    """A benchmark's switches (its ``compat.py`` calls this once)."""
    names = [switch.name for switch in switches]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or "mode" in names:
        raise ValueError(f"benchmark {benchmark!r} declares compat switches twice or as 'mode': {duplicates}")
    _DECLARED[benchmark] = tuple(switches)
    return _DECLARED[benchmark]


def declared(benchmark: str) -> tuple[Switch, ...]:
    """The switches ``<benchmark>/compat.py`` declares (none when the package has no such module)."""
    if benchmark not in _DECLARED:
        if importlib.util.find_spec(benchmark) is not None and importlib.util.find_spec(f"{benchmark}.compat"):
            importlib.import_module(f"{benchmark}.compat")
        _DECLARED.setdefault(benchmark, ())
    return _DECLARED[benchmark]


@dataclass(frozen=True)
class Compat:
    """The switches that are on for one run of ``benchmark``; ``compat.<name>`` is True when that switch is on."""

    benchmark: str
    on: frozenset[str]

    def __getattr__(self, name: str) -> bool:
        if name.startswith("__"):
            raise AttributeError(name)
        known = [switch.name for switch in declared(self.benchmark)]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AttributeError(f"benchmark {self.benchmark!r} declares no compat switch {name!r}{hint}")
        return name in self.on

    @classmethod
    def of(cls, benchmark: str, mode: str = "default", **switches: bool) -> Compat:
        """All of a benchmark's switches as ``mode`` says, with the named ones set alone."""
        return resolve({"mode": mode, **switches}, benchmark)

    def at(self, stage: str) -> list[str]:
        """The switches on that act at ``stage``, sorted: what identities and fingerprints record."""
        return sorted(s.name for s in declared(self.benchmark) if s.name in self.on and stage in s.stages)

    @property
    def mode(self) -> str:
        """``default`` (none on), ``official`` (all on) or ``custom``: how a summary names the setting."""
        if not self.on:
            return "default"
        return "official" if self.on == {s.name for s in declared(self.benchmark)} else "custom"


def resolve(node: Mapping[str, Any] | str | None, benchmark: str) -> Compat:
    """The run's switches from its ``compat`` config (``mode`` plus one value per switch: true, false, or null to
    follow the mode); an unknown mode, switch or value is an error naming it."""
    if node is None or isinstance(node, str):  # a bare mode (configs written before the switches)
        node = {"mode": node or "default"}
    values = dict(node)
    mode = values.pop("mode", "default")
    if mode not in MODES:
        raise ValueError(f"compat must be one of {MODES} (or compat.<switch>=true), got {mode!r}")
    known = {switch.name for switch in declared(benchmark)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"compat.{unknown[0]}: benchmark {benchmark!r} has no such switch; it has "
                         f"{sorted(known) or 'none'}")
    on = set()
    for name in known:
        value = values.get(name)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"compat.{name} must be true, false or null (follow compat's mode), got {value!r}")
        if (mode == "official") if value is None else value:
            on.add(name)
    return Compat(benchmark, frozenset(on))


def apply_switches(cfg: DictConfig, compat: Compat, stage: str, explicit: Iterable[str] = ()) -> list[str]:
    """Set the config values of the switches on at ``stage`` (before the config is validated); returns the keys
    set. ``explicit``: keys given on the command line, which a switch may not silently change."""
    explicit = set(explicit)
    changed = []
    for switch in declared(compat.benchmark):
        if switch.name not in compat.on or stage not in switch.stages or not switch.applies(cfg):
            continue
        for key, value in switch.sets.items():
            if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                continue
            if key in explicit:
                raise ValueError(f"{key} is given on the command line, but compat switch {switch.name!r} (on) sets "
                                 f"it to {value!r}; pass compat.{switch.name}=false to keep your value")
            OmegaConf.update(cfg, key, value, merge=False, force_add=False)
            changed.append(key)
    return changed


def register_configs(benchmarks: Iterable[str]) -> None:
    """Give each benchmark's switches a place in the Hydra config (``compat.<switch>``, null = follow the mode),
    so that a switch can be set on the command line and a misspelt one is refused by Hydra."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for benchmark in benchmarks:
        store.store(group="compat_switches", name=benchmark,
                    node={switch.name: None for switch in declared(benchmark)})
