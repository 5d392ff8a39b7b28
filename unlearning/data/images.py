"""Opening images from a file, encoded bytes (parquet releases) or a decoded image, each error naming the file;
and the key that identifies an image source in a cache."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from unlearning.data.examples import DataError, ImageSource


@functools.lru_cache(maxsize=256)
def load_image(path: Path) -> Image.Image:
    """Open an image as RGB, or raise a DataError that names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise DataError(f"image not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"image cannot be read: {path} ({error})") from error


@functools.lru_cache(maxsize=256)
def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes (a parquet release's Image feature) as RGB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"image bytes cannot be decoded ({error})") from error


def open_image(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, bytes):
        return decode_image(source)
    return load_image(Path(source))


def image_key(source: ImageSource) -> Any:
    """What identifies an image source in a cache: its path, its bytes (their hash is computed once), or a decoded
    image's id (a cache entry must keep that image alive, so the id is not reused)."""
    if isinstance(source, bytes):
        return source
    return id(source) if isinstance(source, Image.Image) else str(source)
