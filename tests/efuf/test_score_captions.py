"""scripts/score_captions.bash on a crafted COCO-layout folder: the original's captions file and JSON lines, with and
without compat, CHAIR counted by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from efuf.chair_original import has_wordnet
from efuf.data import CocoAnnotations
from efuf.metrics import caption_bleu
from efuf.score_captions import score_captions
from efuf.synthetic import write_efuf
from unlearning.data.examples import DataError
from unlearning.recipes.common import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
ABSENT = {"dog": "umbrella", "cat": "car", "car": "dog", "clock": "cat", "umbrella": "clock", "frisbee": "cat"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_efuf(root, n_pretrain=2, n_images=4, image_size=96, seed=3)
    return root


def crafted(folder: Path) -> tuple[list[tuple[str, str]], CocoAnnotations]:
    """Two captions: one naming an object the image holds, one naming it and an object it does not hold."""
    annotations = CocoAnnotations.read(folder / "annotations/instances_train2014.json",
                                       folder / "annotations/captions_train2014.json")
    first, second = [name for name in annotations.images() if annotations.categories[name]][:2]
    present_1, present_2 = annotations.categories[first][0], annotations.categories[second][0]
    absent = next(c for c in (ABSENT[present_2], "umbrella", "clock", "car", "dog")
                  if c not in annotations.categories[second])
    return [(first, f"A {present_1} in a photo."), (second, f"A {present_2} and a {absent}.")], annotations


def config(*overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("score_captions", overrides=list(overrides))


def test_scores_by_hand_in_both_file_forms(folder: Path, tmp_path: Path):
    captions, annotations = crafted(folder)
    lines = tmp_path / "captions.txt"
    lines.write_text("".join(f"{image} ### {caption}\n" for image, caption in captions))
    scores = score_captions(config(f"captions={lines}", f"data_dir={folder}"))
    # 3 distinct object words, 1 of them absent from its image, in 1 of 2 captions
    assert (scores["n_captions"], scores["n_mentioned"], scores["n_hallucinated"]) == (2, 3, 1)
    assert scores["chair_s"] == pytest.approx(0.5) and scores["chair_i"] == pytest.approx(1 / 3)
    expected = [caption_bleu(annotations.captions[image], caption)["bleu4"] for image, caption in captions]
    assert scores["bleu_4"] == pytest.approx(sum(expected) / 2)
    written = json.loads((tmp_path / "captions.scores.json").read_text())
    assert written["chair_i"] == scores["chair_i"] and written["compat"] == "default" and len(written["samples"]) == 2
    jsonl = tmp_path / "captions.jsonl"  # COCO ids name the images here
    jsonl.write_text("".join(json.dumps({"image": int(image.split("_")[-1].split(".")[0]), "caption": caption}) + "\n"
                             for image, caption in captions))
    assert score_captions(config(f"captions={jsonl}", f"data_dir={folder}", f"out={tmp_path}/j.json")) == scores
    official = score_captions(config(f"captions={lines}", f"data_dir={folder}", "compat.character_bleu=true"))
    assert official["chair_i"] == scores["chair_i"]  # CHAIR as before; BLEU the original's, over characters
    assert official["bleu_1"] == pytest.approx(sum(caption_bleu(annotations.captions[image], caption, True)["bleu1"]
                                                   for image, caption in captions) / 2)
    assert (tmp_path / "captions.scores.custom.json").is_file()


def test_bad_files_and_other_inputs(folder: Path, tmp_path: Path):
    captions, _ = crafted(folder)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{captions[0][0]} ### A dog.\nno separator here\n")
    with pytest.raises(DataError, match=r"bad.txt: line 2: neither '<image> ### <caption>' nor a JSON object"):
        score_captions(config(f"captions={bad}", f"data_dir={folder}"))
    bad.write_text("COCO_train2014_000000999999.jpg ### A dog.\n")
    with pytest.raises(DataError, match="image 'COCO_train2014_000000999999.jpg' is in neither annotation file"):
        score_captions(config(f"captions={bad}", f"data_dir={folder}"))
    good = tmp_path / "good.txt"
    good.write_text(f"{captions[0][0]} ### A dog.\n")
    score_captions(config(f"captions={good}", f"data_dir={folder}", f"out={tmp_path}/s.json"))
    good.write_text(f"{captions[0][0]} ### A cat.\n")
    with pytest.raises(FileExistsError, match="holds scores of other inputs"):
        score_captions(config(f"captions={good}", f"data_dir={folder}", f"out={tmp_path}/s.json"))


def test_the_launcher_as_a_user_runs_it(folder: Path, tmp_path: Path):
    captions, _ = crafted(folder)
    lines = tmp_path / "captions.txt"
    lines.write_text("".join(f"{image} ### {caption}\n" for image, caption in captions))
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    wordnet = [] if has_wordnet() else ["compat.chair_as_original=false"]  # its own tests skip without it
    done = subprocess.run(["bash", "scripts/score_captions.bash", f"captions={lines}", f"data_dir={folder}",
                           "compat=official", f"out={tmp_path}/official.json", *wordnet], cwd=REPO, env=env,
                          check=True, capture_output=True, text=True)
    assert "chair_i         0.3333" in done.stdout and "n_hallucinated  1" in done.stdout
    written = json.loads((tmp_path / "official.json").read_text())
    assert written["compat"] == ("official" if has_wordnet() else "custom")
    assert set(written["inputs"]["compat"]) >= {"character_bleu"}
