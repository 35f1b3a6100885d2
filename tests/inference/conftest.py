"""Synthetic images for the evidence and report tests: made here, so no fixture file is needed.

They are fixtures (not imports), so they never clash with other folders' conftest modules.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage


def _natural_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: noise smoothed at several scales (texture, edges, smooth areas)."""
    rng = np.random.default_rng(seed)
    pixels = sum(ndimage.gaussian_filter(rng.normal(0, 1, (height, width, 3)), (s, s, 0)) * s ** 0.9
                 for s in (1, 3, 8, 20))
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()) * 220 + 15
    return Image.fromarray(pixels.astype(np.uint8))


def _jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after one JPEG save and decode at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture(scope="session")
def natural_image():
    """``natural_image(height, width, seed)`` -> a photo-like RGB PIL image."""
    return _natural_image


@pytest.fixture(scope="session")
def jpeg_roundtrip():
    """``jpeg_roundtrip(image, quality)`` -> the image after one JPEG save and decode."""
    return _jpeg_roundtrip
