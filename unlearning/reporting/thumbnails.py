"""Small copies of the images a run's samples were asked about, so a report page shows them without the data.

A sample names its example by ``uid``; the image is looked up among the examples the run's benchmark gives
for the splits in the run's ``config.yaml`` (its forget stream and training examples), through the benchmark's
own loader. Where the data is not there (another machine) or a sample has no uid, the page shows no image.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from PIL import Image

from unlearning.benchmarks import PROJECT_ROOT, benchmark_class
from unlearning.data.examples import ImageSource

log = logging.getLogger(__name__)
THUMBNAIL_PIXELS = 96  # the longer side; small enough that a page of a few hundred samples stays light


def _splits(cfg: Any) -> list[str]:
    bench = cfg.get("benchmark") or {}
    names = [bench.get("forget_split"), bench.get("retain_split"), cfg.get("forget_split"), cfg.get("split")]
    return list(dict.fromkeys(str(name) for name in names if name))


def _data_dir(value: str) -> Path:
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


class ImageIndex:
    """uid -> image of each benchmark's examples, loaded once per (benchmark, data, options, splits)."""

    def __init__(self) -> None:
        self._loaded: dict[str, dict[str, ImageSource]] = {}

    def for_run(self, run_dir: Path) -> dict[str, ImageSource]:
        """The images of the run's examples by uid; empty when its config or data cannot be read."""
        path = run_dir / "config.yaml"
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else None
        except Exception as error:  # a config that does not load only costs the thumbnails
            log.info("report: no images for %s (%s)", run_dir, error)
            return {}
        if not isinstance(cfg, dict) or not isinstance(cfg.get("benchmark"), dict) or not cfg.get("data_dir"):
            return {}
        bench = cfg["benchmark"]
        key = json.dumps([bench.get("name"), cfg["data_dir"], bench.get("options"), _splits(cfg)], sort_keys=True,
                         default=str)
        if key not in self._loaded:
            self._loaded[key] = self._load(str(bench.get("name")), _data_dir(str(cfg["data_dir"])),
                                           dict(bench.get("options") or {}), _splits(cfg))
        return self._loaded[key]

    @staticmethod
    def _load(name: str, data_dir: Path, options: dict[str, Any], splits: list[str]) -> dict[str, ImageSource]:
        try:
            benchmark = benchmark_class(name)(data_dir, **options)
        except Exception as error:  # data not on this machine: the page shows no image
            log.info("report: no images from %s at %s (%s)", name, data_dir, error)
            return {}
        images: dict[str, ImageSource] = {}
        for split in splits:
            for load in (lambda s: benchmark.stream("forget", s), benchmark.train_examples):
                try:
                    examples = load(split)
                except Exception:  # a split one of the two does not know
                    continue
                for example in examples:
                    if example.uid and example.image is not None:
                        images.setdefault(example.uid, example.image)
        return images


class Thumbnails:
    """Writes each distinct image once, as a small JPEG under ``folder``; returns its name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._names: dict[str, str | None] = {}

    def add(self, source: ImageSource) -> str | None:
        """The thumbnail's file name (None when the image cannot be read)."""
        if isinstance(source, bytes):
            key = hashlib.sha1(source).hexdigest()
        elif isinstance(source, Path | str):
            key = hashlib.sha1(str(source).encode()).hexdigest()
        else:
            key = hashlib.sha1(source.tobytes()).hexdigest()
        if key not in self._names:
            self._names[key] = self._write(source, f"{key[:16]}.jpg")
        return self._names[key]

    def _write(self, source: ImageSource, name: str) -> str | None:
        try:
            image = source if isinstance(source, Image.Image) else Image.open(
                io.BytesIO(source) if isinstance(source, bytes) else source)
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        except (OSError, ValueError) as error:
            log.info("report: image left out (%s)", error)
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        image.save(self.folder / name, format="JPEG", quality=80)
        return name
