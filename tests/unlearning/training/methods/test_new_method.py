"""A new method is one file plus one YAML: written here into the source tree (and removed afterwards), it runs
through ``forget_lora.bash method=<name>`` and the shared method tests pick it up, with nothing else edited."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_launchers import run

NAME = "zz_throwaway"
METHOD_FILE = REPO / "unlearning" / "training" / "methods" / f"{NAME}.py"
CONFIG_FILE = REPO / "config" / "method" / f"{NAME}.yaml"
SOURCE = '''"""A throwaway method for a test: L = -NLL(forget) + retain_weight * NLL(retain)."""

from dataclasses import dataclass

from unlearning.training.methods.base import METHODS
from unlearning.inference.scoring import mean_nll
from unlearning.data.streams import RANDOM, StreamUse


@METHODS.register("zz_throwaway")
@dataclass
class Throwaway:
    retain_weight: float = 2.0

    needs_reference = False

    def streams(self):
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def loss(self, policy, reference, progress):
        forget, retain = mean_nll(policy["forget"]), mean_nll(policy["retain"])
        return -forget + self.retain_weight * retain, {"zz_forget": forget.item(), "zz_step": progress.step}
'''


@pytest.fixture()
def throwaway_method():
    assert not METHOD_FILE.exists() and not CONFIG_FILE.exists()
    METHOD_FILE.write_text(SOURCE)
    CONFIG_FILE.write_text(f"# A throwaway method.\nname: {NAME}\nretain_weight: 2.0\n")
    try:
        yield NAME
    finally:
        METHOD_FILE.unlink(missing_ok=True)
        CONFIG_FILE.unlink(missing_ok=True)


def test_a_new_method_file_and_yaml_are_all_it_takes(throwaway_method: str, tmp_path: Path, fiu_dir: Path,
                                                     tiny_dir: Path):
    run("bash", "scripts/forget_lora.bash", f"method={throwaway_method}", "max_steps=2", "batch_size=2",
        "log_every=1", f"model_path={tiny_dir}", f"run_root={tmp_path}/runs", f"data_dir={fiu_dir}",
        f"model.path={tiny_dir}")
    (run_dir,) = (tmp_path / "runs" / "fiubench" / "tiny").glob(f"{throwaway_method}_forget10_*")
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [record["zz_step"] for record in log] == [0, 1]  # the loss saw the training progress
    shared = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/unlearning/recipes/test_recipes.py",
         "-k", throwaway_method], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert shared.returncode == 0, shared.stdout[-3000:]
    for check in ("test_forget_method_trains_adapters_only", "test_stage_one_weights_are_untouched_by_forgetting"):
        assert f"{check}[{throwaway_method}] PASSED" in shared.stdout
