import json
import os
from pathlib import Path

import pytest

from unlearning.registry import Registry
from unlearning.runs.io import atomic_write_dir, atomic_write_json, redact


def test_atomic_json_leaves_no_temp_files_and_readable_permissions(tmp_path: Path):
    path = atomic_write_json(tmp_path / "out" / "summary.json", {"a": 1.5})
    assert json.loads(path.read_text()) == {"a": 1.5}
    assert os.listdir(tmp_path / "out") == ["summary.json"]
    assert path.stat().st_mode & 0o044 == 0o044


def test_failed_write_keeps_the_previous_file(tmp_path: Path):
    path = atomic_write_json(tmp_path / "summary.json", {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path: Path):
    target = tmp_path / "checkpoint"
    atomic_write_dir(target, lambda d: (d / "a.txt").write_text("one"))

    def broken(folder: Path) -> None:
        (folder / "b.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_dir(target, broken)
    assert sorted(os.listdir(target)) == ["a.txt"] and sorted(os.listdir(tmp_path)) == ["checkpoint"]


def test_redact_hides_secrets_but_keeps_token_counts():
    config = {"judge": {"api_key": "sk-123", "model": "gpt-4o-mini"}, "hf_token": "hf_abc", "max_new_tokens": 50,
              "empty_api_key": None, "nested": [{"password": "p"}]}
    assert redact(config) == {"judge": {"api_key": "***", "model": "gpt-4o-mini"}, "hf_token": "***",
                              "max_new_tokens": 50, "empty_api_key": None, "nested": [{"password": "***"}]}


def test_registry_lookup_and_errors():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha")(1)
    assert registry.get("alpha") == 1 and "alpha" in registry and list(registry) == ["alpha"]
    with pytest.raises(KeyError, match="unknown thing 'alpah'; known: alpha. Did you mean 'alpha'"):
        registry.get("alpah")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("alpha")(2)
