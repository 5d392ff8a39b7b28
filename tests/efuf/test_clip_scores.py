"""Window, patch and top-k scoring on a crafted score map, and the CLIP scorer on a tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from efuf.clip_scores import ClipScorer, WindowSettings, object_score, patch_scores, score_objects, window_boxes
from efuf.tiny_clip import build_tiny_clip

SETTINGS = WindowSettings()  # 192-px windows every 48 px, top 4 patches


def test_windows_and_patches_by_hand():
    boxes = window_boxes(240, 192, SETTINGS)
    assert boxes == [(0, 0, 192, 192), (48, 0, 240, 192)]
    patches = patch_scores(240, 192, boxes, [30.0, 20.0], SETTINGS)
    # 4 rows x 5 columns of 48-px patches: column 0 only in window A (30), 1-3 in both (25), 4 only in B (20)
    assert patches.shape == (4, 5)
    assert np.allclose(patches[:, 0], 30) and np.allclose(patches[:, 1:4], 25) and np.allclose(patches[:, 4], 20)
    assert object_score(patches, 4) == pytest.approx(30.0)
    assert object_score(patches, 8) == pytest.approx((4 * 30 + 4 * 25) / 8)


def _original_windows(height: int, width: int, scores: list[float], patch: int = 48, span: int = 4):
    """insight/clip.py:105-121 and :174-182 restated on array shapes: the crops (top, left, rows, cols) and each
    patch's mean score."""
    rows, cols = (height + patch - 1) // patch, (width + patch - 1) // patch
    crops, mask, total, k = [], np.zeros((rows, cols)), np.zeros((rows, cols)), 0
    for w in range(rows - span + 1):
        for h in range(cols - span + 1):
            top, left = w * patch, h * patch
            crops.append((top, left, min(height, top + span * patch) - top, min(width, left + span * patch) - left))
            mask[w:w + span, h:h + span] += 1
            total[w:w + span, h:h + span] += scores[k]
            k += 1
    return crops, total / mask


def test_the_originals_edge_windows():
    """A 640x427 image: the original starts 11 x 6 = 66 windows (the last column and row cropped short), whole
    windows alone give 10 x 5 = 50 and leave the last patch column and row uncovered."""
    original = WindowSettings(partial_edges=True)
    for width, height, n_original, n_whole in ((640, 427, 66, 50), (640, 480, 77, 70), (500, 375, 40, 28)):
        boxes = window_boxes(width, height, original)
        scores = [float(i % 7) for i in range(len(boxes))]
        crops, means = _original_windows(height, width, scores)
        assert [(t, left, b - t, r - left) for left, t, r, b in boxes] == crops and len(boxes) == n_original
        assert np.allclose(patch_scores(width, height, boxes, scores, original), means)
        assert len(window_boxes(width, height, SETTINGS)) == n_whole
    assert np.isnan(patch_scores(640, 427, window_boxes(640, 427, SETTINGS), [1.0] * 50, SETTINGS)[-1]).all()


def test_small_images_are_scored_whole():
    assert window_boxes(100, 80, SETTINGS) == [(0, 0, 100, 80)]
    patches = patch_scores(100, 80, [(0, 0, 100, 80)], [27.0], SETTINGS)
    assert patches.shape == (2, 3) and object_score(patches, 4) == pytest.approx(27.0)


def test_one_scorer_call_per_image_and_each_object_its_own_column():
    calls = []

    def scorer(crops, texts):
        calls.append((len(crops), list(texts)))
        return np.array([[10.0 * (i + 1), 5.0] for i in range(len(crops))])

    scores = score_objects(Image.new("RGB", (240, 192)), ["dog", "cat"], scorer, SETTINGS)
    assert calls == [(2, ["A photo containing dog.", "A photo containing cat."])]
    assert scores == {"dog": pytest.approx(20.0), "cat": pytest.approx(5.0)}  # dog: windows 10, 20 -> top patches
    assert score_objects(Image.new("RGB", (240, 192)), [], scorer, SETTINGS) == {}


def test_bad_window_settings():
    with pytest.raises(ValueError, match="window a multiple of stride"):
        WindowSettings(window=100, stride=48)


def test_clip_scorer_runs_a_transformers_clip(tmp_path: Path):
    folder = build_tiny_clip(tmp_path / "clip", ["A photo containing dog.", "A photo containing cat."],
                             image_size=32, hidden=32, layers=1, projection=16, vocab_size=200)
    scorer = ClipScorer(folder, batch_size=2)
    texts = ["A photo containing dog.", "A photo containing cat."]
    table = scorer([Image.new("RGB", (64, 64), (200, 0, 0))] * 3, texts)
    assert table.shape == (3, 2) and np.isfinite(table).all()
    scores = score_objects(Image.new("RGB", (240, 192), (0, 0, 200)), ["dog"], scorer, SETTINGS)
    assert np.isfinite(scores["dog"])
