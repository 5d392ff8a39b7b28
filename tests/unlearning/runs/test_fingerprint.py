"""Content fingerprints: files by their bytes wherever they lie, labels left out, checkpoints by their files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from unlearning.data.examples import Example
from unlearning.runs.fingerprint import HASH_CONTENT_UP_TO, content_hash, folder_fingerprint, model_fingerprint


@dataclass(frozen=True)
class Labelled:
    value: str
    where: str = field(default="", metadata={"fingerprint": False})


def test_files_count_by_content_not_by_place(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "img.jpg").write_bytes(b"pixels")
    shutil.copytree(a, b)
    first = content_hash([Example("q", "a", a / "img.jpg")])
    assert content_hash([Example("q", "a", b / "img.jpg")]) == first  # moved data: the same
    (b / "img.jpg").write_bytes(b"other pixels")
    assert content_hash([Example("q", "a", b / "img.jpg")]) != first  # replaced image: another hash
    assert content_hash([Example("q", "b", a / "img.jpg")]) != first
    assert content_hash(Labelled("x", "file 1: row 3")) == content_hash(Labelled("x", "file 2: row 9"))
    assert content_hash({"x": b"1"}) != content_hash({"x": b"2"})
    with pytest.raises(TypeError, match="cannot fingerprint"):
        content_hash(object())


def test_checkpoints_by_their_files(tmp_path: Path, monkeypatch):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 10)
    before = model_fingerprint(str(folder), None)
    (folder / "model.safetensors").write_bytes(b"v" * 10)
    assert model_fingerprint(str(folder), None) != before
    monkeypatch.setattr("unlearning.runs.fingerprint.HASH_CONTENT_UP_TO", 4)  # large files: size and time
    described = folder_fingerprint(folder)
    assert set(described["model.safetensors"]) == {"size", "mtime_ns"} and isinstance(described["config.json"], str)
    assert HASH_CONTENT_UP_TO == 64 * 2**20
    assert model_fingerprint("org/some-model", None) != model_fingerprint("org/other-model", None)
