"""Image rephrasing: the forget questions shown with a transformed copy of their image (crop, rotation, blur,
noise, JPEG re-encoding), to see whether forgetting holds beyond the exact pixels it was trained on.

Each transform draws its random parameters from a generator seeded by the attack's seed, the transform's name and
a hash of the image's pixels, so an image gets the same transform on every machine and in every run. The result
is encoded bytes (PNG; JPEG for the JPEG attack): caches key it by content, not by object identity.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from unlearning.data.examples import ImageSource
from unlearning.data.images import open_image

TRANSFORMS = ("crop", "rotate", "blur", "noise", "jpeg")
MIXED = "rephrase"  # each image one of TRANSFORMS, drawn with the seed


@dataclass(frozen=True)
class ImageOptions:
    """How strong each transform is (``attacks.images`` in the eval config); the defaults change an image visibly
    while keeping its subject recognisable."""

    seed: int = 0
    crop_scale: tuple[float, float] = (0.6, 0.85)  # the kept side, as a fraction of the image's
    rotate_degrees: tuple[float, float] = (10.0, 25.0)  # either direction
    blur_radius: float = 0.01  # Gaussian blur radius, as a fraction of the image's longer side
    noise_std: float = 0.08  # Gaussian noise per pixel, as a fraction of the 0-255 range
    jpeg_quality: int = 10

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"attacks.images.crop_scale must be 0 < low <= high <= 1, got {list(self.crop_scale)}")
        low, high = self.rotate_degrees
        if not 0 <= low <= high <= 180:
            raise ValueError(f"attacks.images.rotate_degrees must be 0 <= low <= high <= 180, got "
                             f"{list(self.rotate_degrees)}")
        if self.blur_radius < 0 or self.noise_std < 0:
            raise ValueError("attacks.images.blur_radius and noise_std must not be negative")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"attacks.images.jpeg_quality must be 1..95, got {self.jpeg_quality}")


def _generator(image: Image.Image, name: str, seed: int) -> np.random.Generator:
    """The transform's random numbers for this image: seed, transform and pixels decide them."""
    digest = hashlib.sha256(f"{seed}|{name}|{image.size}|".encode() + image.tobytes()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def crop(image: Image.Image, options: ImageOptions, rng: np.random.Generator) -> bytes:
    """A random window (each side ``crop_scale`` of the image's) resized back to the image's size."""
    width, height = image.size
    scale = rng.uniform(*options.crop_scale)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return _png(image.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BICUBIC))


def rotate(image: Image.Image, options: ImageOptions, rng: np.random.Generator) -> bytes:
    """Rotated by ``rotate_degrees`` either way about the centre, the corners filled with the image's mean colour."""
    angle = rng.uniform(*options.rotate_degrees) * (1 if rng.random() < 0.5 else -1)
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    return _png(image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill))


def blur(image: Image.Image, options: ImageOptions, rng: np.random.Generator) -> bytes:
    """Gaussian blur whose radius scales with the image, so a thumbnail and a photo are blurred alike."""
    return _png(image.filter(ImageFilter.GaussianBlur(options.blur_radius * max(image.size))))


def noise(image: Image.Image, options: ImageOptions, rng: np.random.Generator) -> bytes:
    """Gaussian noise added to every pixel, clipped to 0-255."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, options.noise_std * 255.0, size=pixels.shape)
    return _png(Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB"))


def jpeg(image: Image.Image, options: ImageOptions, rng: np.random.Generator) -> bytes:
    """Re-encoded as JPEG at ``jpeg_quality`` (its block artefacts are the change)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=options.jpeg_quality)
    return buffer.getvalue()


_FUNCTIONS: dict[str, Callable[[Image.Image, ImageOptions, np.random.Generator], bytes]] = {
    "crop": crop, "rotate": rotate, "blur": blur, "noise": noise, "jpeg": jpeg}


def transform_image(source: ImageSource, name: str, options: ImageOptions) -> bytes:
    """``source`` under the transform ``name`` (one of TRANSFORMS, or MIXED: one of them drawn per image)."""
    image = open_image(source)
    if name == MIXED:
        name = TRANSFORMS[int(_generator(image, MIXED, options.seed).integers(len(TRANSFORMS)))]
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown image transform {name!r}; known: {', '.join(TRANSFORMS)}, {MIXED}")
    return _FUNCTIONS[name](image, options, _generator(image, name, options.seed))


def changed_fraction(before: ImageSource, after: ImageSource) -> float:
    """Mean absolute pixel change in [0, 1] (0: the same image): how much a transform moved an image."""
    a = np.asarray(open_image(before), dtype=np.float32)
    b = np.asarray(open_image(after).resize(open_image(before).size), dtype=np.float32)
    return float(np.abs(a - b).mean() / 255.0)
