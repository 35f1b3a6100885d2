"""Spectrum of the noise residual: periodic peaks left by upsampling and resampling.

Interpolation makes some pixels weighted averages of their neighbours, so the strength of the
high-pass residual varies periodically with the resampling period (Popescu & Farid 2005; Gallagher
2005). The magnitude of a directional third-difference residual is Fourier-transformed in 2D; a
peak on the horizontal or vertical frequency axis standing far above that axis' median magnitude
reveals the period.
A JPEG's 8x8 block grid produces peaks at periods 8, 4, 8/3 and 2; when the period-8 peak is
present those harmonics are attributed to compression, not resampling. The price: in a JPEG, 2x
upsampling (period 2) cannot be told from the grid and is not reported; periods 3, 5, ... still are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from forenx.schema import Quadruple

__all__ = ["SpectralPeak", "SpectrumResult", "residual_spectrum", "spectrum_evidence"]

SOURCE = "evidence:spectrum"

#: Analysed centre crop side (the statistic needs native pixels, never a resize).
MAX_ANALYSED_SIDE = 1024
#: A peak must exceed the median magnitude of its frequency axis this many times.
PEAK_FACTOR = 15.0
#: Longest period searched: resampling periods are short; longer ones are image content (stripes,
#: textures), which the scikit-image sample photos show at periods of 18-330 pixels.
MAX_PERIOD = 16.0


@dataclass
class SpectralPeak:
    #: "horizontal" (along x) or "vertical" (along y).
    axis: str
    #: The spatial period in pixels (2.0 for 2x upsampling).
    period: float
    #: Peak magnitude over the axis median.
    strength: float


@dataclass
class SpectrumResult:
    #: Log-magnitude 2D spectrum of the residual, zero frequency centred, scaled to 0..1.
    spectrum: np.ndarray
    peaks: list[SpectralPeak] = field(default_factory=list)
    #: Whether the 8x8 JPEG block grid was seen (its harmonics are not counted as resampling).
    jpeg_grid: bool = False


def _axis_peaks(line: np.ndarray, axis: str) -> list[SpectralPeak]:
    """Peaks of one non-negative frequency axis (index k = k cycles per ``2 * (len - 1)`` pixels)."""
    size = 2 * (len(line) - 1)
    first = max(2, int(np.ceil(size / MAX_PERIOD)))
    floor = float(np.median(line[first:])) + 1e-9
    peaks = []
    for k in range(first, len(line)):
        left = line[k - 1]
        right = line[k + 1] if k + 1 < len(line) else -np.inf
        if line[k] >= left and line[k] >= right and line[k] / floor >= PEAK_FACTOR:
            peaks.append(SpectralPeak(axis, size / k, float(line[k] / floor)))
    return peaks


def residual_spectrum(image: Image.Image) -> SpectrumResult:
    """The residual spectrum and its periodic peaks.

    >>> rng = np.random.default_rng(0)
    >>> small = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).convert("RGB")
    >>> [round(p.period, 1) for p in residual_spectrum(small.resize((128, 128), Image.BILINEAR)).peaks]
    [2.0, 2.0]
    >>> residual_spectrum(small).peaks
    []
    """
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    height, width = grey.shape
    y0 = max((height - MAX_ANALYSED_SIDE) // 2, 0)
    x0 = max((width - MAX_ANALYSED_SIDE) // 2, 0)
    grey = grey[y0 : y0 + MAX_ANALYSED_SIDE, x0 : x0 + MAX_ANALYSED_SIDE]
    if min(grey.shape) < 16:
        return SpectrumResult(np.zeros((1, 1)))
    # Third differences along each axis. Centre-aligned 2x interpolation (PIL, OpenCV) makes
    # neighbouring second differences equal in pairs, so the period shows in the third difference;
    # integer-aligned resampling (1.5x, 1.25x) shows in it too.
    spectra = []
    peaks: list[SpectralPeak] = []
    for axis, name in ((1, "horizontal"), (0, "vertical")):
        residual = np.abs(np.diff(grey, n=3, axis=axis))
        # A length that is a multiple of 8 puts the JPEG grid's period 8 and harmonics on exact bins.
        residual = residual[: residual.shape[0] // 8 * 8, : residual.shape[1] // 8 * 8]
        residual -= residual.mean()
        magnitude = np.abs(np.fft.fft2(residual))
        line = magnitude[0, : residual.shape[1] // 2 + 1] if axis == 1 else magnitude[: residual.shape[0] // 2 + 1, 0]
        peaks += _axis_peaks(line, name)
        spectra.append(magnitude)
    rows, cols = min(m.shape[0] for m in spectra), min(m.shape[1] for m in spectra)
    magnitude = sum(m[:rows, :cols] for m in spectra)

    jpeg_grid = any(abs(p.period - 8.0) < 0.25 for p in peaks)
    if jpeg_grid:
        peaks = [p for p in peaks if min(abs(p.period - 8.0 / h) for h in (1, 2, 3, 4)) > 0.1]
    peaks.sort(key=lambda p: -p.strength)

    shown = np.log1p(np.fft.fftshift(magnitude))
    low, high = np.percentile(shown, [1.0, 99.9])  # so a few huge bins do not wash out the rest
    shown = np.clip((shown - low) / max(float(high - low), 1e-9), 0.0, 1.0)
    return SpectrumResult(shown.astype(np.float32), peaks, jpeg_grid)


def spectrum_evidence(source: str | Path | bytes | None, image: Image.Image) -> tuple[list[Quadruple], SpectrumResult]:
    """At most one quadruple (the strongest resampling period) and the spectrum for the report.

    ``source`` is unused: the spectrum is a property of the decoded pixels.
    """
    result = residual_spectrum(image)
    if not result.peaks:
        return [], result
    strongest = result.peaks[0]
    axes = sorted({p.axis for p in result.peaks if abs(p.period - strongest.period) < 0.1})
    factor = strongest.period if strongest.period >= 1.9 else None
    severity = int(min(40 + 4 * np.log2(strongest.strength), 60))
    quadruple = Quadruple(
        name="Periodic resampling trace",
        phenomenon=f"the noise residual's spectrum has a {strongest.strength:.0f}x peak at a period of "
                   f"{strongest.period:.2f} pixels ({' and '.join(axes)})"
                   + (f", as left by {factor:.0f}x upsampling" if factor and abs(factor - round(factor)) < 0.05 else "")
                   + ".",
        reasoning="Interpolation makes pixels periodic averages of their neighbours; generators that upsample "
                  "internally and images enlarged or rotated after capture show such peaks. Camera "
                  "demosaicing is removed by ordinary JPEG saving, so a strong peak means resampling.",
        severity=severity, source=SOURCE)
    return [quadruple], result
