"""Shared fixtures of the model tests: the tiny ForenX model, its processor and a few images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forenx.modeling import tiny_model


@pytest.fixture(scope="session")
def tiny():
    """``(model, processor)`` of the tiny configuration. Shared: tests that train or edit the
    model build their own."""
    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Three random RGB images of different sizes (the processor resizes them)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 50), (64, 64), (30, 90))]


@pytest.fixture(scope="session")
def big_photo() -> np.ndarray:
    """A 256 px crop of a shipped photograph (room for a region of several blocks)."""
    from forenx.data.synth.photos import default_photos, load_photos

    arrays, _ = load_photos([p for p in default_photos() if p.name == "chelsea"], 256)
    return np.ascontiguousarray(arrays["chelsea"][:256, :256])
