"""The six new general evaluations as a benchmark attaches them: found by name, settings from config/eval.yaml's
eval.general block, built-in data written in the release layout and read back."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from unlearning.evaluation.general import general_eval, general_settings

REPO = Path(__file__).resolve().parents[2]
NEW = ("gqa", "vizwiz", "scienceqa_img", "vqav2", "mmvet", "mmbench")


@pytest.mark.parametrize("name", NEW)
def test_config_settings_and_builtin_data(name: str, tmp_path: Path):
    configs = OmegaConf.to_container(OmegaConf.load(REPO / "config" / "eval.yaml").eval.general)
    configs[name].update(data_dir=str(tmp_path / name), builtin_dir=str(tmp_path / name))
    (settings,) = general_settings([name], configs).values()
    evaluation = general_eval(name)
    evaluation.write_builtin(tmp_path / name)
    items, prompts = evaluation.questions(settings)
    assert len(items) == len(prompts) >= 6 and all(p.uid.startswith(f"{name.split('_')[0]}/") for p in prompts)
    args = (items, [p.answer for p in prompts]) + ((None, None) if evaluation.judged else ())
    result = evaluation.score(*args)
    assert result["accuracy"] == (None if evaluation.judged else 1.0) and result["subset"] is None
