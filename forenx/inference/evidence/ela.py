"""Error-level analysis (ELA): how much each region changes when re-saved as JPEG.

A region whose compression history differs from the rest (pasted from another file, re-saved at
another quality, or never compressed while the rest was) re-compresses differently. The error is
divided by the local texture, because textured regions always change more than flat ones and raw
ELA would flag every sky-next-to-foliage photo. A quadruple is written only when one connected
region clearly differs from the rest; a uniform image (a camera JPEG, a clean PNG) gives none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from forenx.schema import Quadruple

__all__ = ["ELA_QUALITY", "ElaResult", "ela_evidence", "error_level_analysis"]

SOURCE = "evidence:ela"

#: The JPEG quality of the re-save (the usual ELA setting).
ELA_QUALITY = 90
#: Analysis block size in pixels (the JPEG block is 8; two give stabler statistics).
BLOCK = 16
#: Beyond this many pixels, the centre is analysed (ELA needs native pixels, never a resize).
MAX_ANALYSED_SIDE = 4096
#: A block is textured when its mean high-pass magnitude exceeds this (grey levels).
_MIN_ACTIVITY = 1.5
#: Robust z-score and error-ratio factors a block must exceed to be inconsistent (more / less error
#: than the rest). Set so that the scikit-image sample photos, as PNG and as JPEG at 75-95, give none.
_Z_THRESHOLD, _MIN_FACTOR, _MIN_FACTOR_DARKER = 4.0, 2.2, 3.0
_RATIO_FLOOR = 0.05
#: Error-over-texture above which the image as a whole was not compressed near ELA_QUALITY.
_FRESH_RATIO = 0.6


@dataclass
class ElaResult:
    #: The amplified per-pixel error as an RGB uint8 array (the map shown in the HTML report).
    error_map: np.ndarray
    #: Error over texture per block; NaN where the block is too flat to judge.
    block_ratio: np.ndarray
    #: Region [x0, y0, x1, y1] (pixels of the analysed image) that is inconsistent, or None.
    box: list[float] | None
    #: How many times the region's error-over-texture differs from the rest (>= 1).
    contrast: float
    #: Offset of the analysed crop in the image (non-zero only for huge images).
    offset: tuple[int, int] = (0, 0)
    #: Whether the region re-compresses more (True) or less (False) than the rest.
    brighter: bool = True


def _centre_crop(image: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
    if image.width <= MAX_ANALYSED_SIDE and image.height <= MAX_ANALYSED_SIDE:
        return image, (0, 0)
    x0 = max((image.width - MAX_ANALYSED_SIDE) // 2, 0)
    y0 = max((image.height - MAX_ANALYSED_SIDE) // 2, 0)
    return image.crop((x0, y0, x0 + min(image.width, MAX_ANALYSED_SIDE),
                       y0 + min(image.height, MAX_ANALYSED_SIDE))), (x0, y0)


def error_level_analysis(image: Image.Image, quality: int = ELA_QUALITY) -> ElaResult:
    """Re-save ``image`` as JPEG at ``quality`` and locate a region with a different error level.

    >>> rng = np.random.default_rng(0)
    >>> noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    >>> error_level_analysis(noise).box is None
    True
    """
    rgb, offset = _centre_crop(image.convert("RGB"))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality)
    resaved = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    pixels = np.asarray(rgb, dtype=np.float32)
    error = np.abs(pixels - resaved).max(axis=2)

    scale = max(float(np.percentile(error, 99.5)), 1.0)
    error_map = np.clip(np.abs(pixels - resaved) * (255.0 / scale), 0, 255).astype(np.uint8)

    grey = pixels.mean(axis=2)
    activity = np.abs(grey - ndimage.uniform_filter(grey, size=3))
    rows, cols = grey.shape[0] // BLOCK, grey.shape[1] // BLOCK
    ratio = np.full((max(rows, 0), max(cols, 0)), np.nan)
    if rows < 4 or cols < 4:
        return ElaResult(error_map, ratio, None, 1.0, offset)
    crop = (slice(0, rows * BLOCK), slice(0, cols * BLOCK))

    def block_mean(values: np.ndarray) -> np.ndarray:
        return values[crop].reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))

    block_error, block_activity = block_mean(error), block_mean(activity)
    textured = block_activity > _MIN_ACTIVITY
    ratio[textured] = block_error[textured] / (block_activity[textured] + 1.0)
    if textured.sum() < 16:
        return ElaResult(error_map, ratio, None, 1.0, offset)

    # Single blocks re-compress almost losslessly by chance (JPEG is near-idempotent); a 3x3 median
    # over blocks keeps regions and drops those isolated dips. The floor keeps logs of ~0 finite.
    filled = np.where(textured, ratio, np.nanmedian(ratio))
    smoothed = ndimage.median_filter(filled, size=3, mode="nearest")
    log_ratio = np.log(smoothed + _RATIO_FLOOR)
    centre = float(np.median(log_ratio[textured]))
    spread = max(1.4826 * float(np.median(np.abs(log_ratio[textured] - centre))), 0.05)
    deviation = np.where(textured, log_ratio - centre, 0.0)
    inconsistent = textured & (deviation > max(_Z_THRESHOLD * spread, np.log(_MIN_FACTOR)))
    # A region that re-compresses *less* is telling only when the rest was never compressed near
    # this quality; in an already-compressed JPEG, low-error patches are ordinary idempotence.
    if np.exp(centre) - _RATIO_FLOOR >= _FRESH_RATIO:
        inconsistent |= textured & (deviation < -max(_Z_THRESHOLD * spread, np.log(_MIN_FACTOR_DARKER)))
    labels, count = ndimage.label(inconsistent)
    if count == 0:
        return ElaResult(error_map, ratio, None, 1.0, offset)
    sizes = ndimage.sum(inconsistent, labels, index=range(1, count + 1))
    best = int(np.argmax(sizes)) + 1
    # A real region spans several blocks and is a minority of the picture.
    if sizes[best - 1] < 4 or sizes[best - 1] > 0.5 * textured.sum():
        return ElaResult(error_map, ratio, None, 1.0, offset)
    ys, xs = np.nonzero(labels == best)
    box = [float(xs.min() * BLOCK + offset[0]), float(ys.min() * BLOCK + offset[1]),
           float((xs.max() + 1) * BLOCK + offset[0]), float((ys.max() + 1) * BLOCK + offset[1])]
    region_deviation = float(np.median(deviation[labels == best]))
    return ElaResult(error_map, ratio, box, float(np.exp(abs(region_deviation))), offset, region_deviation > 0)


def ela_evidence(source: str | Path | bytes | None, image: Image.Image) -> tuple[list[Quadruple], ElaResult]:
    """ELA quadruples (at most one: the inconsistent region) and the result with its error map.

    ``source`` is unused: ELA works on the decoded pixels the model sees.
    """
    result = error_level_analysis(image)
    if result.box is None:
        return [], result
    x0, y0, x1, y1 = (int(v) for v in result.box)
    brighter = result.brighter
    severity = int(min(35 + 10 * np.log2(result.contrast), 60))  # ELA alone is a weak cue
    quadruple = Quadruple(
        name="Inconsistent error level",
        phenomenon=f"the region x {x0}-{x1}, y {y0}-{y1} re-compresses {result.contrast:.1f}x "
                   f"{'more' if brighter else 'less'} (relative to its texture) than the rest of the image "
                   f"when re-saved at JPEG quality {ELA_QUALITY}.",
        reasoning="A region with a different compression history than its surroundings was often pasted "
                  "in or retouched; ELA also reacts to local re-saving and sharpening, so it is a hint.",
        severity=severity, source=SOURCE, box=result.box)
    return [quadruple], result
