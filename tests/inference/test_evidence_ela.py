"""Error-level analysis on synthetic composites: the pasted region lights up, clean images do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forenx.inference.evidence.ela import BLOCK, ela_evidence, error_level_analysis

REGION = (slice(96, 176), slice(64, 160))  # rows y 96..176, columns x 64..160


def _overlap(box, region=REGION) -> float:
    """Intersection over union of a found box with the pasted region."""
    x0, y0, x1, y1 = box
    rx0, ry0, rx1, ry1 = region[1].start, region[0].start, region[1].stop, region[0].stop
    inter = max(0, min(x1, rx1) - max(x0, rx0)) * max(0, min(y1, ry1) - max(y0, ry0))
    return inter / ((x1 - x0) * (y1 - y0) + (rx1 - rx0) * (ry1 - ry0) - inter)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_uncompressed_region_pasted_into_a_jpeg(seed, natural_image, jpeg_roundtrip):
    composite = np.array(jpeg_roundtrip(natural_image(256, 256, seed), 90))
    composite[REGION] = np.array(natural_image(256, 256, seed + 100))[REGION]
    quadruples, result = ela_evidence(None, Image.fromarray(composite))
    assert len(quadruples) == 1, "the pasted region was not found"
    found = quadruples[0]
    assert found.source == "evidence:ela" and found.box == result.box
    assert _overlap(found.box) > 0.6 and result.brighter
    assert 35 <= found.severity <= 60  # ELA is a hint, never proof
    assert "more" in found.phenomenon


def test_recompressed_region_pasted_into_an_uncompressed_image(natural_image, jpeg_roundtrip):
    composite = np.array(natural_image(256, 256, 4))
    composite[REGION] = np.array(jpeg_roundtrip(natural_image(256, 256, 5), 90))[REGION]
    quadruples, result = ela_evidence(None, Image.fromarray(composite))
    assert len(quadruples) == 1 and _overlap(result.box) > 0.6
    assert not result.brighter and "less" in quadruples[0].phenomenon


@pytest.mark.parametrize("kind", ["noise", "natural png", "natural jpeg 75", "natural jpeg 90", "flat"])
def test_uniform_images_do_not_trigger(kind, natural_image, jpeg_roundtrip):
    rng = np.random.default_rng(7)
    image = {
        "noise": lambda: Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
        "natural png": lambda: natural_image(256, 256, 8),
        "natural jpeg 75": lambda: jpeg_roundtrip(natural_image(256, 256, 9), 75),
        "natural jpeg 90": lambda: jpeg_roundtrip(natural_image(256, 256, 10), 90),
        "flat": lambda: Image.new("RGB", (256, 256), (128, 128, 128)),
    }[kind]()
    quadruples, result = ela_evidence(None, image)
    assert quadruples == [] and result.box is None


def test_error_map_has_the_image_size_and_is_amplified(natural_image, jpeg_roundtrip):
    image = jpeg_roundtrip(natural_image(160, 200, 11), 80)
    result = error_level_analysis(image)
    assert result.error_map.shape == (160, 200, 3) and result.error_map.dtype == np.uint8
    assert result.error_map.max() >= 200  # amplified, not the raw few grey levels
    assert result.block_ratio.shape == (160 // BLOCK, 200 // BLOCK)


def test_tiny_image_gives_no_verdict(natural_image):
    quadruples, result = ela_evidence(None, natural_image(24, 24, 12))
    assert quadruples == [] and result.error_map.shape == (24, 24, 3)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera", "rocket", "coins"])
@pytest.mark.parametrize("quality", [None, 75, 88, 95])
def test_real_photographs_do_not_trigger(name, quality, jpeg_roundtrip):
    """scikit-image's bundled sample photos (real cameras, some once JPEG-compressed): no finding."""
    from skimage import data

    photo = Image.fromarray(getattr(data, name)()).convert("RGB")
    if quality is not None:
        photo = jpeg_roundtrip(photo, quality)
    assert ela_evidence(None, photo)[0] == []
