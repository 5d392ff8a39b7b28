"""Each launcher's --help: its header and its config's main settings, one line each, read from the config."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from unlearning.runs.usage import CONFIG_DIR, settings

LAUNCHERS = {"finetune.bash": "finetune", "forget_lora.bash": "forget", "eval_everything.bash": "eval",
             "aggregate.bash": "aggregate", "curate_efuf.bash": "curate"}


@pytest.mark.parametrize(("script", "config"), sorted(LAUNCHERS.items()))
def test_help_lists_every_top_level_setting_one_line_each(script: str, config: str):
    result = subprocess.run(["bash", f"scripts/{script}", "--help"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable}, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"usage: bash scripts/{script}")
    listed = {line.split("=", 1)[0].strip() for line in out.splitlines() if line.startswith("  ") and "=" in line}
    own = set(yaml.safe_load((CONFIG_DIR / f"{config}.yaml").read_text())) - {"defaults", "hydra"}
    assert own <= listed, own - listed
    assert "Traceback" not in result.stderr and "new run" not in result.stderr  # nothing was run


def test_settings_read_groups_blocks_and_comments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("defaults:\n  - model: tiny\n  - optional recipe: ${benchmark}_${model}\n  - _self_\n"
                      "  - override hydra/job_logging: none\n"
                      "lr: 1e-3            # the rate\nlora:\n  r: 8   # rank\n  deep:\n    x: 1\n"
                      "hydra:\n  run:\n    dir: .\n")
    assert settings(config) == [("model", "tiny", "(a config group: config/model/<name>.yaml)"),
                                ("recipe", "${benchmark}_${model}", "(a config group: config/recipe/<name>.yaml)"),
                                ("lr", "1e-3", "the rate"), ("lora", "{...}", ""), ("lora.r", "8", "rank"),
                                ("lora.deep", "{...}", "")]
