"""A launcher's ``--help``: what the script does (its header comment) and the main settings of its config, one
line each, read from ``config/<name>.yaml`` itself so the help never drifts from the settings it describes.

    python -m unlearning.runs.usage scripts/forget_lora.bash forget

Hydra's own help stays reachable as ``--hydra-help``; ``--cfg job`` prints every resolved value.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TOP_LEVEL = re.compile(r"^([A-Za-z_][\w]*):\s*(.*?)\s*(?:#\s?(.*))?$")
NESTED = re.compile(r"^  ([A-Za-z_][\w]*):\s*(.*?)\s*(?:#\s?(.*))?$")
GROUP = re.compile(r"^\s+-\s+(?:optional\s+)?([\w/@]+):\s*([^#\s]*)\s*(?:#\s?(.*))?$")
WIDTH = 44
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"  # as unlearning.recipes.common (not imported: torch)


def script_header(script: Path) -> list[str]:
    """The script's leading comment lines (after the shebang), without their ``#``."""
    lines = []
    for line in script.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def settings(config: Path) -> list[tuple[str, str, str]]:
    """(name, default, comment) of the config's groups (``defaults``), top-level settings and the keys of its
    top-level blocks (``eval.batch_size``); a deeper block shows ``{...}``. Hydra's own block is left out."""
    out: list[tuple[str, str, str]] = []
    section = None
    for line in config.read_text(encoding="utf-8").splitlines():
        match = TOP_LEVEL.match(line)
        if match:
            name, value, comment = match.groups()
            section = name
            if name not in ("defaults", "hydra"):
                out.append((name, value or "{...}", comment or ""))
            continue
        nested = NESTED.match(line) if section not in (None, "defaults", "hydra") else None
        if nested:
            name, value, comment = nested.groups()
            out.append((f"{section}.{name}", value or "{...}", comment or ""))
            continue
        group = GROUP.match(line) if section == "defaults" else None
        if group and not group.group(1).startswith(("override", "_self_")) and "@" not in group.group(1):
            out.append((group.group(1), group.group(2), group.group(3) or "(a config group: config/"
                        f"{group.group(1)}/<name>.yaml)"))
    return out


def usage(script: Path, config_name: str, config_dir: Path = CONFIG_DIR) -> str:
    lines = [f"usage: bash {script.as_posix()} [setting=value ...] [-m setting=a,b ...]", ""]
    lines += script_header(script)
    lines += ["", f"Settings (config/{config_name}.yaml; any nested key too, e.g. eval.batch_size=8):"]
    for name, value, comment in settings(config_dir / f"{config_name}.yaml"):
        value = value if len(value) <= 30 else value[:27] + "..."
        lines.append(f"  {name + '=' + value:<{WIDTH}} {comment}".rstrip())
    lines += ["", "-m: a sweep (Hydra multirun), one run per combination; hydra/launcher=local_parallel or slurm "
                  "(config/hydra/launcher/).",
              "--cfg job: print every resolved setting and exit; --hydra-help: Hydra's own help."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m unlearning.runs.usage <script> <config name>", file=sys.stderr)
        return 2
    print(usage(Path(argv[0]), argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
