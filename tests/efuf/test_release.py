"""An EFUF data folder read into weighted streams; the EFUF loss weights at given steps; LLM object replies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from efuf.benchmark import EfufTask
from efuf.chair import ObjectVocabulary
from efuf.curation import separation
from efuf.data import Caption, read_instruct
from efuf.objects import mentions_of, parse_objects, read_prompt
from efuf.synthetic import write_efuf
from unlearning.data.examples import DataError
from unlearning.inference.scoring import AnswerLogits
from unlearning.recipes.common import CONFIG_DIR
from unlearning.training.methods import build_method
from unlearning.training.methods.base import Progress, StreamScores

CAPTION = "A photo of a dog, a frisbee is next to it."


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "efuf"
    write_efuf(root, n_pretrain=4, n_images=6, image_size=96, seed=1)
    image = "COCO_train2014_000000000001.jpg"
    (root / "pos_neg.json").write_text(json.dumps([
        {"image": image, "sentence": "A photo of a dog", "position": 0, "score": 35.0},
        {"image": image, "sentence": CAPTION[:-1], "position": 16, "score": 20.0},
        {"image": image, "sentence": CAPTION[:-1], "position": 16, "score": 27.0},  # between the thresholds
    ]))
    (root / "sentences.json").write_text(json.dumps([
        {"image": image, "sentence": CAPTION, "mean": 27.5, "min": 20.0},
        {"image": "COCO_train2014_000000000002.jpg", "sentence": "A photo of a cat.", "mean": 30.0, "min": 30.0},
    ]))
    (root / "captions.txt").write_text(f"COCO_train2014_000000000003.jpg ### {CAPTION}\n")
    return root


def test_gold_records_without_a_usable_image(folder: Path, caplog):
    """finetune/data.py:40-45 skips, among the first records, those without an image or whose image is missing;
    by default a text-only record trains without an image and a missing image stops the run."""
    gold = json.loads((folder / "gold.json").read_text())[:4]
    del gold[1]["image"]
    gold[2]["image"] = "COCO_gone.jpg"
    (folder / "gold.json").write_text(json.dumps(gold))
    with pytest.raises(DataError, match=r"gold.json: record 2: image 'COCO_gone.jpg' not found"):
        EfufTask(folder).stream("gold", "curated")
    with caplog.at_level("INFO"):
        kept = EfufTask(folder, gold_size=3, gold_skip_unusable=True).stream("gold", "curated")
    assert [example.uid for example in kept] == ["gold-0"]  # the first 3 records, then skipped: the original's order
    assert "1 of the first 3 records kept as gold data; 1 without an image and 1 whose image is missing" in caplog.text
    del gold[2]
    (folder / "gold.json").write_text(json.dumps(gold))
    text_only = EfufTask(folder).stream("gold", "curated")[1]
    assert text_only.image is None and text_only.uid == "gold-1"


def test_streams_weights_and_spans(folder: Path):
    task = EfufTask(folder, gold_size=3)
    (neg,) = task.stream("forget", "curated")
    assert neg.context == "A photo of a dog" and neg.answer == ", a frisbee is next to it"
    assert neg.weight == pytest.approx(55.0 - 20.0) and not neg.final and neg.image.name.endswith("01.jpg")
    (pos,) = task.stream("positive", "curated")
    assert pos.weight == 35.0 and pos.context == "" and pos.answer == "A photo of a dog" and not pos.final
    (sentence,) = task.stream("sentence", "curated")  # min 20 fails the hallucination threshold; mean 30 passes
    assert sentence.answer == "A photo of a cat." and sentence.weight == 30.0 and sentence.final
    gold = task.stream("gold", "curated")
    assert len(gold) == 3 and all(g.weight == 40.0 and g.final and g.image is not None for g in gold)
    assert gold[0].question == "Which objects does the image show?"  # "<image>\n" stripped
    other = EfufTask(folder, neg_threshold=28.0, pos_threshold=34.0)
    assert [e.weight for e in other.stream("forget", "curated")] == [62.0 - 20.0, 62.0 - 27.0]


def test_finetune_split_and_held_out_images(folder: Path):
    task = EfufTask(folder)
    assert len(task.train_examples("full")) == 8  # a caption and an object list per pretraining scene
    with pytest.raises(DataError, match="split 'retain'"):
        task.train_examples("retain")
    with pytest.raises(DataError, match="forget_split=curated"):
        task.stream("forget", "forget10")
    # images 1-3 are named by the curation files: evaluation takes the others, in order
    assert task.data.evaluation_images(2) == ["COCO_train2014_000000000004.jpg", "COCO_train2014_000000000005.jpg"]


def test_bad_folders_name_file_and_record(folder: Path):
    records = json.loads((folder / "pos_neg.json").read_text())
    records[1]["image"] = "COCO_missing.jpg"
    (folder / "pos_neg.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"pos_neg.json: record 1: image 'COCO_missing.jpg' not found"):
        EfufTask(folder).stream("forget", "curated")
    Image.new("RGB", (8, 8)).save(folder / "images" / "COCO_missing.jpg")
    raw = (folder / "images" / "COCO_missing.jpg").read_bytes()
    (folder / "images" / "COCO_missing.jpg").write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(DataError, match=r"record 1: image .*COCO_missing.jpg cannot be read"):
        EfufTask(folder).stream("forget", "curated")
    gold = json.loads((folder / "gold.json").read_text())
    gold[1]["conversations"] = [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]
    (folder / "gold.json").write_text(json.dumps(gold))
    with pytest.raises(DataError, match=r"gold.json: record 1: the first two turns must come from 'human' then"):
        read_instruct(folder / "gold.json")
    gold[1]["conversations"] = "no"
    (folder / "gold.json").write_text(json.dumps(gold))
    with pytest.raises(DataError, match=r"gold.json: record 1: field 'conversations' must list"):
        EfufTask(folder).stream("gold", "curated")
    with pytest.raises(ValueError, match="neg_threshold <= pos_threshold"):
        EfufTask(folder, neg_threshold=40.0)


def _answer(weights: list[float]) -> AnswerLogits:
    """Four one-token rows whose target has probability 1/2, 1/4, 1/8, 1/16 (a two-word vocabulary)."""
    p = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    logits = torch.stack([torch.log(p), torch.log(1 - p)], dim=1)
    return AnswerLogits(logits, torch.zeros(4, dtype=torch.long), torch.arange(4), 4, torch.tensor(weights))


def test_efuf_loss_weights_and_schedule_at_given_steps():
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=["benchmark=efuf", "method=efuf"])
    method = build_method(cfg.method)
    assert [u.name for u in method.streams()] == ["forget", "positive", "gold"]  # sentence weight 0: left out
    assert [u.pairing for u in method.streams()] == ["aligned", "random", "random"]
    weights = [55.0 - 20.0, 35.0, 40.0, 1.0]  # as the streams give them: 55 - score, score, gold 40
    scores = StreamScores(_answer(weights), {"forget": (0, 1), "positive": (1, 2), "gold": (2, 3)})
    nll = [torch.log(torch.tensor(2.0)) * k for k in (1, 2, 3)]
    for step, w_neg, w_pos in ((0, 0.3, 1.0), (40, 0.3, 0.8), (70, 0.15, 0.65), (100, 0.0, 0.5)):
        loss, logs = method.loss(scores, None, Progress(step, 100))
        expected = -w_neg * 35.0 * nll[0] + w_pos * 35.0 * nll[1] + 0.3 * 40.0 * nll[2]
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5), step
        assert logs["w_sequence_ascent_forget"] == pytest.approx(w_neg)
        assert logs["w_sequence_nll_positive"] == pytest.approx(w_pos)
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=["benchmark=efuf", "method=efuf", "method.params.sentence_weight=0.2"])
    assert [u.name for u in build_method(cfg.method).streams()][-1] == "sentence"


def test_llm_object_replies_read_like_the_original():
    reply = "Objects: dog, frisbee, green grass (the rest is scenery)"
    assert parse_objects(reply) == ["dog", "frisbee", "green grass"]
    assert parse_objects("cat,  Cat, bench.\n") == ["cat", "bench"]
    vocabulary = ObjectVocabulary.from_file()
    caption = Caption("a.jpg", "A boy tries to catch a Frisbee near two dogs.")
    found = mentions_of(caption, ["cat", "frisbee", "dogs", "kite"], vocabulary)
    assert [(m.word, m.category, m.text) for m in found] == [("frisbee", "frisbee", "Frisbee"),
                                                             ("dogs", "dog", "dogs")]  # no "cat" in "catch"
    assert "{caption}" in read_prompt(None)


def test_separation_by_hand():
    out = separation([(35.0, True), (30.0, True), (20.0, False), (30.0, False)], neg=23.0, pos=32.0)
    # pairs present > absent: 35>20, 35>30, 30>20 and one tie (30, 30): (3 + 0.5) / 4
    assert out["auc"] == pytest.approx(0.875) and out["mean_present"] == 32.5 and out["mean_absent"] == 25.0
    assert out["present_above_pos"] == 0.5 and out["absent_below_neg"] == 0.5
