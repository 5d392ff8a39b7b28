"""Opening images from a file, encoded bytes (parquet releases) or a decoded image, each error naming the file;
and the key that identifies an image source in a cache.

PIL refuses an image of more than twice ``Image.MAX_IMAGE_PIXELS`` pixels (about 179 million: a guard against
decompression bombs). A genuine larger image is allowed by setting the environment variable
``UNLEARNING_MAX_IMAGE_PIXELS`` to the pixels to allow (e.g. ``400000000``), read each time an image is opened.
"""

from __future__ import annotations

import functools
import io
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from unlearning.data.examples import DataError, ImageSource

MAX_PIXELS_VARIABLE = "UNLEARNING_MAX_IMAGE_PIXELS"
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def apply_pixel_limit() -> None:
    """Set PIL's decompression-bomb limit from ``UNLEARNING_MAX_IMAGE_PIXELS`` when it is set (PIL's own otherwise),
    so a user can allow a genuine large image without code."""
    raw = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not raw:
        return
    if not raw.isdigit() or int(raw) < 1:
        raise DataError(f"{MAX_PIXELS_VARIABLE} must be a whole number of pixels, got {raw!r}")
    Image.MAX_IMAGE_PIXELS = int(raw)


def open_checked(source: Path | io.BytesIO) -> Image.Image:
    """``Image.open`` under the pixel limit ``UNLEARNING_MAX_IMAGE_PIXELS`` sets."""
    apply_pixel_limit()
    return Image.open(source)


def too_large(error: Image.DecompressionBombError) -> str:
    """What to say of an image PIL refuses as a possible decompression bomb: its size, and how to allow it."""
    size = re.search(r"\((\d+) pixels\)", str(error))
    allow = int(size.group(1)) if size else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
    return (f"too large to open ({error}); if the image is genuine, allow it by setting the environment variable "
            f"{MAX_PIXELS_VARIABLE}={allow} (or more)")


@functools.lru_cache(maxsize=256)
def load_image(path: Path) -> Image.Image:
    """Open an image as RGB, or raise a DataError that names the file."""
    try:
        with open_checked(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise DataError(f"image not found: {path}") from error
    except Image.DecompressionBombError as error:
        raise DataError(f"image {path} is {too_large(error)}") from error
    except UNREADABLE as error:
        raise DataError(f"image cannot be read: {path} ({error})") from error


@functools.lru_cache(maxsize=256)
def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes (a parquet release's Image feature) as RGB."""
    try:
        with open_checked(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise DataError(f"image bytes are {too_large(error)}") from error
    except UNREADABLE as error:
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
