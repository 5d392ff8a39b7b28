"""Shared fixtures: a small synthetic FIUBench and a tiny LLaVA, built once per session, offline.

Tiers: `pytest` runs everything here on CPU in a few minutes; nothing downloads. Real release files
from ../shared/fixtures are used where present and the tests that need them skip cleanly otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unlearning.runs.numerics import pin_cpu_numerics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
pin_cpu_numerics()  # before torch loads: the pinned numbers repeat on any x86-64 CPU with AVX2

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = Path(os.environ.get("UNLEARNING_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))

# A ~0.1M-parameter LLaVA: same classes and processor as the demo's model, 4 image tokens.
SMALL_MODEL = dict(
    image_size=56, patch_size=28, text_hidden=64, text_layers=2, text_heads=4, text_ffn=128,
    vision_hidden=32, vision_layers=1, vision_heads=2, vision_ffn=64, vocab_size=600,
)


def shared_fixture(*parts: str) -> Path:
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} not available")
    return path


@pytest.fixture(scope="session")
def fiu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fiubench.synthetic import write_fiubench

    return write_fiubench(tmp_path_factory.mktemp("fiubench"), n_identities=20, qa_per_identity=3, image_size=56,
                          n_holdout=4)


@pytest.fixture(scope="session")
def mllmu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mllmu.synthetic import write_mllmu

    return write_mllmu(tmp_path_factory.mktemp("mllmu"), n_profiles=10, n_celebrities=3, image_size=56)


@pytest.fixture(scope="session")
def safe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safeeraser.synthetic import write_safeeraser

    return write_safeeraser(tmp_path_factory.mktemp("safeeraser"), n_train=6, n_val=3, image_size=56)


@pytest.fixture(scope="session")
def safe_tiny_dir(tmp_path_factory: pytest.TempPathFactory, safe_dir: Path) -> Path:
    """The small model with a tokenizer trained on the SafeEraser data's text."""
    from safeeraser.benchmark import SafeEraserTask
    from unlearning.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llava-safeeraser"
    return build_tiny_model("llava", path, SafeEraserTask(safe_dir).texts(), **SMALL_MODEL)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, fiu_dir: Path) -> Path:
    from fiubench.benchmark import FiuBenchTask
    from unlearning.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llava"
    return build_tiny_model("llava", path, FiuBenchTask(fiu_dir).texts(), **SMALL_MODEL)


@pytest.fixture(scope="session")
def tiny_processor(tiny_dir: Path):
    from unlearning.models.loading import load_processor

    return load_processor(tiny_dir)


@pytest.fixture()
def tiny_model(tiny_dir: Path):
    from unlearning.models.loading import load_model

    return load_model(tiny_dir)


@pytest.fixture()
def collator(tiny_processor, tiny_model):
    from unlearning.data.collator import ChatCollator, stop_token_ids

    return ChatCollator(tiny_processor, stop_token_ids(tiny_processor.tokenizer, tiny_model.generation_config))


def assert_summaries_fit(root: Path, expected: int | None = None) -> list[dict]:
    """Every evaluation summary under ``root`` read through the summary schema (each run's and each step's);
    each has typed metrics, some with a direction and a sample count."""
    from unlearning.evaluation.schema import read_summary

    paths = sorted(root.rglob("eval/summary.json")) + sorted(root.rglob("eval/steps/*/summary.json"))
    summaries = [read_summary(path) for path in paths]
    assert summaries and (expected is None or len(summaries) == expected)
    for summary in summaries:
        metrics = [m for row in summary["metrics"].values() for m in row.values()]
        assert any(m["direction"] and m["n"] for m in metrics), summary["benchmark"]
    return summaries
