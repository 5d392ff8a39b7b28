"""EFUF curation under faults: a kill while the tiny CLIP trains or while the files are renamed in, a scorer at
chance, captions that name no object, and non-finite scores. Each is answered by a retrain or a clear error naming
the setting, file, record or field, never by curated files labelled at random or silently empty.

The end-to-end cases run curation on the smallest built-in world of tests/efuf (5 captions, a 20-step tiny CLIP);
the checks that need many objects run on crafted captions and scores.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from efuf.chair import ObjectVocabulary
from efuf.curation import STATS_FILE, CurationError, curate_folder, curated_files, existing_curation
from efuf.data import Caption, read_pos_neg, read_sentences
from efuf.release import EfufData, EfufOptions
from efuf.synthetic import write_efuf
from efuf.tiny_clip import TRAINED_RECORD, build_tiny_clip, is_trained
from tests.efuf.test_recipes import build_world, config
from unlearning.data.examples import DataError
from unlearning.runs.io import read_json

REPO = Path(__file__).resolve().parents[2]
VOCABULARY = ObjectVocabulary.from_file()
CURATED = ("captions.txt", "pos_neg.json", "sentences.json", STATS_FILE)
CURATION = {"objects": "synonyms", "labels": "clip", "clip": {"path": "models/clip"}, "check_separation": "error",
            "min_separation": 0.6}


class Killed(BaseException):
    """What a kill looks like to the code it interrupts (not an Exception: nothing may catch and carry on)."""


@pytest.fixture(scope="module")
def efuf_world(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(data folder, small model, CLIP path) with a finetuned captioner, as tests/efuf/test_recipes.py builds it."""
    return build_world(tmp_path_factory.mktemp("efuf_faults"))


def snapshot(data: Path) -> dict[str, bytes | None]:
    return {name: (data / name).read_bytes() if (data / name).exists() else None for name in CURATED}


def test_killed_while_the_tiny_clip_trains_the_rerun_trains_it(efuf_world, monkeypatch):
    """The issue: the untrained CLIP was saved at its path before training, and the rerun used it silently."""
    data, model, clip = efuf_world
    root = data.parent

    def killed(*args, **kwargs):  # the model is built and saved (in the staging folder) before the crops are cut
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr("efuf.tiny_clip._window_crops", killed)
        with pytest.raises(Killed):
            curate_folder(config("curate", root, data, model))
    assert not clip.exists() and not list(clip.parent.glob(f".{clip.name}.*"))  # no CLIP, no staging folder
    assert snapshot(data) == dict.fromkeys(CURATED)  # nothing curated
    stats = curate_folder(config("curate", root, data, model))  # the rerun trains the CLIP, then curates
    assert is_trained(clip) and read_json(clip / TRAINED_RECORD)["steps"] == 20
    assert stats["captions"] == 5 and all((data / name).is_file() for name in CURATED)


def test_an_untrained_clip_at_the_path_is_refused(efuf_world):
    """What the old code left after a kill: a CLIP folder without its training record. Curation refuses it and
    keeps the files curated before."""
    data, model, _ = efuf_world
    root = data.parent
    clip = root / "untrained-clip"
    build_tiny_clip(clip, ["A photo containing dog.", "A photo containing cat."])
    if not (data / STATS_FILE).exists():
        curate_folder(config("curate", root, data, model))
    before = snapshot(data)
    with pytest.raises(CurationError, match=rf"{clip} holds no tiny_clip.json.*untrained.*clip.tiny=null"):
        curate_folder(config("curate", root, data, model, f"benchmark.recipe.curation.clip_path={clip}",
                             "benchmark.curation.overwrite=true"))
    assert snapshot(data) == before


def test_a_real_kill_leaves_no_clip_at_the_path(tmp_path: Path):
    """SIGKILL mid-training (no clean-up runs): only a hidden staging folder is left, never the CLIP's path."""
    data = tmp_path / "data"
    write_efuf(data, n_pretrain=2, n_images=2, image_size=240, seed=3)
    clip = tmp_path / "clip"
    script = f"""
import os, signal
from pathlib import Path
import efuf.tiny_clip as tiny
from efuf.clip_scores import WindowSettings
tiny._window_crops = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
tiny.train_tiny_clip(Path({str(clip)!r}), Path({str(data / "pretrain")!r}),
                     Path({str(data / "annotations/instances_pretrain.json")!r}), WindowSettings(), steps=2)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not clip.exists()
    (staging,) = tmp_path.glob(".clip.*.tmp")  # the half-built model, under a name nothing looks up
    assert (staging / "config.json").is_file() and not is_trained(staging)


def test_a_scorer_at_chance_stops_curation(tmp_path: Path, caplog):
    """80 captions name a dog (in the image) and a cat (not): a scorer giving both the same score is at chance."""
    data = EfufData(tmp_path, EfufOptions())
    captions = [Caption(f"COCO_{i}.jpg", "A dog sits beside a cat.") for i in range(80)]
    found = {c: VOCABULARY.mentions(c.text) for c in captions}
    truth = {c.image: {"dog"} for c in captions}
    at_chance = {(c, m.word): 27.0 for c in captions for m in found[c]}
    with pytest.raises(CurationError, match=r"AUC 0\.50 on 80 present and 80 absent objects.*"
                                            r"benchmark\.curation\.min_separation=0\.6.*check_separation=warn"):
        curated_files(captions, found, truth, at_chance, data, CURATION, {})
    assert not list(tmp_path.iterdir())  # nothing written, not even a staging file
    with caplog.at_level(logging.WARNING, logger="efuf.curation"):
        stats = curated_files(captions, found, truth, at_chance, data, {**CURATION, "check_separation": "warn"}, {})
    assert stats["separation"]["auc"] == 0.5 and "AUC 0.50" in caplog.text and "check_separation=warn" in caplog.text
    assert len(read_pos_neg(tmp_path / "pos_neg.json")) == 80
    # a scorer that tells them apart passes; so does one at chance on too few objects to tell (with a warning)
    grounded = {key: 35.0 if key[1] == "dog" else 15.0 for key in at_chance}
    assert curated_files(captions, found, truth, grounded, data, CURATION, {}, write=False)["separation"]["auc"] == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="efuf.curation"):
        curated_files(captions[:3], found, truth, at_chance, data, CURATION, {}, write=False)
    assert "too few objects to tell" in caplog.text


def test_captions_without_object_words_stop_curation(efuf_world, tmp_path: Path, monkeypatch):
    data, model, _ = efuf_world
    root = data.parent
    before = snapshot(data)
    monkeypatch.setattr("efuf.curation.generate_answers",
                        lambda model, collator, examples, *args, **kwargs: ["A plain picture, nothing more."] *
                        len(examples))
    with pytest.raises(CurationError, match=r"found no object: none of the 5 captions holds an object word of the "
                                            r"COCO synonym list.*A plain picture"):
        curate_folder(config("curate", root, data, model, "benchmark.curation.overwrite=true"))
    assert snapshot(data) == before
    folder = EfufData(tmp_path, EfufOptions())
    captions = [Caption("a.jpg", "A blank wall.")]
    with pytest.raises(CurationError, match="none of the 1 captions holds an object word"):
        curated_files(captions, {captions[0]: []}, {}, {}, folder, CURATION, {})
    assert not list(tmp_path.iterdir())


def test_a_non_finite_clip_score_stops_curation(tmp_path: Path):
    captions = [Caption("COCO_7.jpg", "A dog.")]
    found = {c: VOCABULARY.mentions(c.text) for c in captions}
    with pytest.raises(CurationError, match=r"score of object 'dog' in image COCO_7\.jpg is nan"):
        curated_files(captions, found, {}, {(captions[0], "dog"): float("nan")}, EfufData(tmp_path, EfufOptions()),
                      CURATION, {})
    assert not list(tmp_path.iterdir())


def test_a_kill_while_the_files_are_renamed_in_is_never_taken_for_a_finished_curation(tmp_path: Path,
                                                                                     monkeypatch):
    data = EfufData(tmp_path, EfufOptions())
    captions = [Caption(f"COCO_{i}.jpg", "A dog sits beside a cat.") for i in range(3)]
    found = {c: VOCABULARY.mentions(c.text) for c in captions}
    table = {(c, m.word): 35.0 if m.word == "dog" else 15.0 for c in captions for m in found[c]}
    identity = {"model": "m"}
    curated_files(captions, found, {c.image: {"dog"} for c in captions}, table, data, CURATION, identity)
    assert existing_curation(data, identity, overwrite=False)
    renames = []

    def replace(source, target):
        if len(renames) == 2:
            raise Killed
        renames.append(target)
        os.rename(source, target)

    monkeypatch.setattr("efuf.curation.os.replace", replace)
    with pytest.raises(Killed):
        curated_files(captions, found, {}, table, data, CURATION, identity)
    assert not (tmp_path / STATS_FILE).exists()  # removed before the first rename: the set is not finished
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileExistsError, match=r"without curation\.json.*interrupted.*overwrite=true"):
        existing_curation(data, identity, overwrite=False)


@pytest.mark.parametrize(("name", "field", "value"), [("pos_neg.json", "score", "NaN"),
                                                     ("sentences.json", "mean", "Infinity"),
                                                     ("sentences.json", "min", "-Infinity")])
def test_non_finite_scores_in_the_files_are_refused(tmp_path: Path, name: str, field: str, value: str):
    """Python's json reads NaN: a NaN score fell through every threshold and its clause was silently dropped."""
    good = {"image": "a.jpg", "sentence": "A dog. A cat", "position": 7, "score": 35.0, "mean": 30.0, "min": 28.0}
    path = tmp_path / name
    path.write_text("[" + json.dumps(good) + ", " + json.dumps({**good, "image": "b.jpg"}).replace(
        f'"{field}": {good[field]}', f'"{field}": {value}') + "]")
    read = read_pos_neg if name == "pos_neg.json" else read_sentences
    with pytest.raises(DataError, match=rf"{name}: record 1 \(image 'b\.jpg'\): field '{field}' must be a finite "
                                        rf"number, got {value.lower().replace('infinity', 'inf')}"):
        read(path)


def test_a_data_folder_another_curation_is_writing_is_left_alone(efuf_world):
    """Issue 22 (concurrency): a second curation of one data folder stops, naming the one writing it."""
    from efuf.curation import CURATION_LOCK
    from unlearning.runs.locks import Busy, Lock

    data, model, _ = efuf_world
    before = snapshot(data)
    with Lock(data / CURATION_LOCK, "a test"), pytest.raises(
            Busy, match=rf"data folder {data} is being written by another process \(pid {os.getpid()}"):
        curate_folder(config("curate", data.parent, data, model, "benchmark.curation.overwrite=true"))
    assert snapshot(data) == before
