"""Procedural "photographs" for ForgerySynth's training split: dead-leaves images.

A detector trained on a dozen photographs learns the photographs: scored on its own training photos
the forensic stream separates sharpening at AUC 0.97-0.99, on unseen ones at 0.65. Dead-leaves images
(occluding shapes whose sizes follow a power law, the classic model of natural-image statistics; used
as training images for restoration networks by Achddou et al., 2021) add scenes without end: every one
is new, so none can be memorised, while their edges, textures, defocus and noise have the statistics
the manipulations disturb. They are cropped, varied and manipulated exactly like the photographs.

Every image is drawn from its own generator ``default_rng([seed, 3, k])`` with colours sampled from
the training split's photographs (``palette``), so the same seed and photos give the same images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from forenx.data.synth.manipulations import jpeg_roundtrip
from forenx.data.synth.photos import Photo

__all__ = ["PROCEDURAL_LICENSE", "dead_leaves", "palette_of", "procedural_catalogue", "procedural_image"]

PROCEDURAL_LICENSE = "CC0 (procedural dead-leaves image drawn by forenx)"
#: Side of a procedural photograph; capture variations crop up to about 1.6 times the crop side from it.
SIDE = 640
_SUPERSAMPLE = 2


def procedural_catalogue(count: int) -> list[Photo]:
    """``count`` procedural photos (names ``dead_leaves_000``...; each is its own group, no file)."""
    width = max(3, len(str(count - 1)))
    return [Photo(name=f"dead_leaves_{k:0{width}d}", path="", group=f"dead_leaves_{k:0{width}d}",
                  license=PROCEDURAL_LICENSE) for k in range(count)]


def palette_of(photos: list[np.ndarray], rng: np.random.Generator, per_photo: int = 4000) -> np.ndarray:
    """``per_photo`` random pixels of each photo, ``(N, 3)`` float32: the colours dead leaves are painted in."""
    if not photos:
        raise ValueError("procedural photos take their colours from the training split's photographs; it has none")
    return np.concatenate([p.reshape(-1, 3)[rng.integers(p.shape[0] * p.shape[1], size=per_photo)]
                           for p in photos]).astype(np.float32)


def _fractal(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Gaussian noise with a 1/f^beta amplitude spectrum, zero mean, unit variance, ``(n, n)``."""
    f = np.fft.fftfreq(n)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / radius ** beta
    spectrum[0, 0] = 0.0
    field = np.fft.ifft2(spectrum).real
    return (field / field.std()).astype(np.float32)


def dead_leaves(rng: np.random.Generator, palette: np.ndarray, side: int = SIDE) -> np.ndarray:
    """One dead-leaves image, ``(side, side, 3)`` uint8.

    Drawn at twice the size and box-filtered down (anti-aliased edges, as a lens and sensor give):
    a textured background, then 400-2,500 ellipses and rectangles, large ones first, with radii
    from p(r) ~ r^-3; each flat, textured with 1/f noise, or shaded by a gradient; half of them
    defocused (their colour and their coverage blurred together, soft-edged as an out-of-focus
    object is); half the images under smooth uneven light; then a global lens blur,
    signal-dependent sensor noise, and for 40% of them a JPEG pass at quality 80-97 (as some of the
    photographs are JPEG files).

    >>> image = dead_leaves(np.random.default_rng(0), np.array([[200.0, 30, 30], [20, 90, 200]]), side=64)
    >>> image.shape, image.dtype
    ((64, 64, 3), dtype('uint8'))
    """
    n = side * _SUPERSAMPLE
    image = np.empty((n, n, 3), np.float32)
    image[:] = palette[rng.integers(len(palette))]
    texture, coarse = _fractal(rng, n, rng.uniform(0.8, 1.4)), _fractal(rng, n, rng.uniform(1.2, 1.8))
    image += rng.uniform(3, 25) * coarse[..., None]
    r_min, r_max = 3.0 * _SUPERSAMPLE, rng.uniform(80, 260) * _SUPERSAMPLE * side / SIDE
    count = int(rng.integers(400, 2500) * (side / SIDE) ** 2) + 1
    radii = np.sort(1 / np.sqrt(1 / r_min ** 2 - rng.random(count) * (1 / r_min ** 2 - 1 / r_max ** 2)))[::-1]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for r in radii:
        cy, cx = rng.uniform(-r, n + r, 2)
        y0, y1 = int(max(0, cy - r)), int(min(n, cy + r + 1))
        x0, x1 = int(max(0, cx - r)), int(min(n, cx + r + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        rectangle = rng.integers(3) == 2
        angle = rng.uniform(0, np.pi)
        along, across = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        aspect = rng.uniform(0.4, 1.0)
        if rectangle:
            inside = (np.abs(along) <= 0.8 * r) & (np.abs(across) <= 0.8 * r * aspect)
        else:
            inside = along ** 2 + (across / aspect) ** 2 <= r ** 2
        if not inside.any():
            continue
        patch = np.broadcast_to(palette[rng.integers(len(palette))], inside.shape + (3,)).copy()
        kind = rng.random()
        if kind < 0.45:
            field = texture if rng.random() < 0.5 else coarse
            patch += rng.uniform(2, 35) * field[y0:y1, x0:x1, None] * rng.uniform(0.6, 1.4, 3).astype(np.float32)
        elif kind < 0.7:
            patch += rng.uniform(-60, 60) * (along / max(r, 1.0))[..., None]
        sigma = 0.0 if rng.random() < 0.5 else rng.uniform(0.6, 5.0) * _SUPERSAMPLE
        if sigma == 0.0:
            image[y0:y1, x0:x1][inside] = patch[inside]
            continue
        pad = int(3 * sigma) + 1
        top, bottom, left, right = max(0, y0 - pad), min(n, y1 + pad), max(0, x0 - pad), min(n, x1 + pad)
        cover = np.zeros((bottom - top, right - left), np.float32)
        cover[y0 - top:y1 - top, x0 - left:x1 - left] = inside
        colour = np.zeros((bottom - top, right - left, 3), np.float32)
        colour[y0 - top:y1 - top, x0 - left:x1 - left] = patch * inside[..., None]
        cover = ndimage.gaussian_filter(cover, sigma)
        colour = ndimage.gaussian_filter(colour, (sigma, sigma, 0))
        under = image[top:bottom, left:right]
        under[:] = under * (1 - cover[..., None]) + colour
    if rng.random() < 0.5:
        image *= np.exp(0.5 * rng.uniform(0.1, 0.5) * _fractal(rng, n, 2.5))[..., None]
    small = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize((side, side), Image.BOX)
    out = np.asarray(small.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1))), np.float32)
    noise = rng.uniform(0.5, 3.0) * np.sqrt(np.maximum(out, 1.0) / 128)
    out = np.clip(np.rint(out + rng.normal(size=out.shape) * noise), 0, 255).astype(np.uint8)
    return jpeg_roundtrip(out, int(rng.integers(80, 98))) if rng.random() < 0.4 else out


def procedural_image(palette: np.ndarray, seed: int, k: int) -> np.ndarray:
    """The k-th procedural photograph of ``seed``: :func:`dead_leaves` from ``default_rng([seed, 3, k])``."""
    return dead_leaves(np.random.default_rng([seed, 3, k]), palette)
