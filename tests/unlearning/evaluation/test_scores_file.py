"""Where a scoring command writes, and that it never replaces scores of other inputs unasked."""

import json
from pathlib import Path

import pytest

from unlearning.evaluation.scores_file import scores_target


def test_the_default_name_and_other_inputs(tmp_path: Path):
    source = tmp_path / "answers_val.json"
    assert scores_target(source, None, "default", {"a": 1}, False) == tmp_path / "answers_val.scores.json"
    target = scores_target(source, None, "official", {"a": 1}, False)
    assert target == tmp_path / "answers_val.scores.official.json"
    target.write_text(json.dumps({"inputs": {"a": 1}}))
    assert scores_target(source, None, "official", {"a": 1}, False) == target  # the same inputs: its own result
    with pytest.raises(FileExistsError, match="holds scores of other inputs"):
        scores_target(source, None, "official", {"a": 2}, False)
    assert scores_target(source, None, "official", {"a": 2}, True) == target
    assert scores_target(source, str(tmp_path / "x.json"), "official", {"a": 2}, False) == tmp_path / "x.json"
