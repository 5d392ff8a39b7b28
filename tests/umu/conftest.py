"""A small built-in UMU-Bench (8 profiles, 2 real people), written once per session in the release's layout."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def umu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from umu.synthetic import write_umu

    return write_umu(tmp_path_factory.mktemp("umu") / "umu", n_profiles=8, n_real=2, image_size=56)
