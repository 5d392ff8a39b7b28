"""The general evaluations' part under ``eval.limit``: each evaluation asks its first questions only, and a list
of items keeps what its scorer reads besides the items (MM-Vet's grading template, a subset note)."""

from pathlib import Path

from omegaconf import OmegaConf

from unlearning.evaluation.general import general_eval, general_part, general_settings
from unlearning.evaluation.runner import first

REPO = Path(__file__).resolve().parents[3]
NAMES = ("mme", "pope", "mmvet", "mmbench")


def test_the_general_part_asks_the_first_questions_of_each(tmp_path: Path):
    configs = OmegaConf.to_container(OmegaConf.load(REPO / "config" / "eval.yaml").eval.general)
    for name in NAMES:
        configs[name].update(data_dir=str(tmp_path / name), builtin_dir=str(tmp_path / name))
        general_eval(name).write_builtin(tmp_path / name)
    template = tmp_path / "grading.txt"
    template.write_text("Grade {question} {answer} {prediction}")
    configs["mmvet"]["judge_prompt_file"] = str(template)
    settings = general_settings(list(NAMES), configs)
    full, limited = general_part(settings, 2), general_part(settings, 2, limit=3)
    assert {name: len(prompts) for name, prompts in limited.data.items()} == dict.fromkeys(NAMES, 3)
    assert all(limited.data[name] == full.data[name][:3] for name in NAMES)
    items, _ = general_eval("mmvet").questions(settings["mmvet"])
    assert first(items, 3).template == "Grade {question} {answer} {prediction}"
