"""Where a result came from: code revision, date, library versions (and how they differ from the lock), CPU numerics.

``requirements.lock`` holds the exact versions the demos' tables and the pinned test numbers were made with
(``make`` installs them). A process running on other versions says so once, in one log line naming the
packages, and every run records the differences with its versions.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

from unlearning.runs.numerics import cpu_numerics

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = PROJECT_ROOT / "requirements.lock"
PACKAGES = ("torch", "transformers", "peft", "accelerate")  # recorded with every run
_PIN = re.compile(r"^#?\s*([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_file: Path | None = None) -> dict[str, str]:
    """``name -> version`` of the lock (torch from its header line); empty when there is no lock (the library
    installed into another environment)."""
    lock_file = LOCK_FILE if lock_file is None else lock_file
    if not lock_file.is_file():
        return {}
    pins = {}
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _public(version: str | None) -> str | None:
    """torch's local label (``+cpu``, ``+cu128``) names the build, not the release."""
    return version.split("+", 1)[0] if version else version


def lock_differences(lock_file: Path | None = None) -> dict[str, dict[str, str | None]]:
    """The packages whose installed version is not the lock's: ``name -> {installed, locked}``."""
    out = {}
    for name, locked in locked_versions(lock_file).items():
        installed = _installed(name)
        if _public(installed) != _public(locked):
            out[name] = {"installed": installed, "locked": locked}
    return out


@functools.lru_cache(maxsize=1)
def _differences_once() -> dict[str, dict[str, str | None]]:
    differences = lock_differences()
    if differences:
        log.warning("running on versions other than requirements.lock's (numbers may differ from the README's "
                    "and the pinned tests'): %s", ", ".join(
                        f"{name} {d['installed'] or 'missing'} (lock {d['locked']})"
                        for name, d in sorted(differences.items())))
    return differences


def check_versions() -> dict[str, dict[str, str | None]]:
    """Log, once per process, the packages that differ from the lock; returns them."""
    return _differences_once()


def git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=PROJECT_ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict[str, Any]:
    """Code revision, date, library versions (with the lock's differences) and what decided the CPU digits."""
    return {"git": git_revision(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {package: _installed(package) for package in PACKAGES},
            "lock_differences": check_versions(), "numerics": cpu_numerics()}
