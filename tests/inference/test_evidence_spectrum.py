"""Residual-spectrum evidence: upsampling leaves periodic peaks, clean images do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forenx.inference.evidence.spectrum import residual_spectrum, spectrum_evidence


@pytest.mark.parametrize("resample", [Image.BILINEAR, Image.BICUBIC, Image.NEAREST])
def test_2x_upsampling_shows_period_2(resample, natural_image):
    upsampled = natural_image(128, 128, 1).resize((256, 256), resample)
    quadruples, result = spectrum_evidence(None, upsampled)
    assert len(quadruples) == 1
    assert abs(result.peaks[0].period - 2.0) < 0.05
    assert {p.axis for p in result.peaks if abs(p.period - 2.0) < 0.05} == {"horizontal", "vertical"}
    found = quadruples[0]
    assert found.source == "evidence:spectrum" and "period of 2.00 pixels" in found.phenomenon
    assert "2x upsampling" in found.phenomenon and 40 <= found.severity <= 60


def test_1_5x_upsampling_shows_period_3(natural_image):
    _, result = spectrum_evidence(None, natural_image(128, 128, 2).resize((192, 192), Image.BILINEAR))
    assert result.peaks and abs(result.peaks[0].period - 3.0) < 0.1


def test_upsampling_along_one_axis_is_located(natural_image):
    _, result = spectrum_evidence(None, natural_image(256, 128, 3).resize((256, 256), Image.BILINEAR))
    assert {p.axis for p in result.peaks} == {"horizontal"}


@pytest.mark.parametrize("kind", ["noise", "natural", "natural jpeg 90"])
def test_clean_images_do_not_trigger(kind, natural_image, jpeg_roundtrip):
    rng = np.random.default_rng(4)
    image = {"noise": lambda: Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
             "natural": lambda: natural_image(256, 256, 5),
             "natural jpeg 90": lambda: jpeg_roundtrip(natural_image(256, 256, 6), 90)}[kind]()
    quadruples, _ = spectrum_evidence(None, image)
    assert quadruples == []


def test_jpeg_block_grid_is_not_called_resampling(natural_image, jpeg_roundtrip):
    result = residual_spectrum(jpeg_roundtrip(natural_image(256, 256, 7), 70))
    assert result.jpeg_grid and result.peaks == []


def test_spectrum_map_for_the_report(natural_image):
    result = residual_spectrum(natural_image(100, 140, 8))
    assert result.spectrum.ndim == 2 and result.spectrum.min() >= 0 and result.spectrum.max() <= 1
    assert residual_spectrum(Image.new("RGB", (8, 8))).peaks == []  # too small to judge


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera", "rocket", "coins", "page"])
def test_real_photographs_trigger_only_once_upsampled(name, jpeg_roundtrip):
    """scikit-image's bundled sample photos: no peak as they are or as JPEG; a peak once enlarged."""
    from skimage import data

    photo = Image.fromarray(getattr(data, name)()).convert("RGB")
    assert spectrum_evidence(None, photo)[0] == []
    assert spectrum_evidence(None, jpeg_roundtrip(photo, 85))[0] == []
    enlarged = photo.resize((photo.width * 3 // 2, photo.height * 3 // 2), Image.BICUBIC)
    _, result = spectrum_evidence(None, enlarged)
    assert result.peaks and abs(result.peaks[0].period - 3.0) < 0.1
