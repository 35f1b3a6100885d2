"""Capture variations: a photo seen through a different "camera pipeline" before any forgery.

Sixteen photographs are few: a detector trained on crops of twelve of them learns those twelve
(their noise, their colours, their texture scale) and calls every crop of an unseen photo fake.
A capture variation makes each crop a plausible photograph of its own: a random scale (the scene
shot from further away, downscaled with an antialiasing filter), orientation, exposure (gamma,
white balance), greyscale, optical blur, sensor noise and a JPEG save. Every change applies to the
WHOLE crop, before the manipulation, so it is never a forgery: the forged region is still the only
place whose statistics differ from the rest.

>>> import numpy as np
>>> photo = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
>>> crop, box, params = capture_variation(np.random.default_rng(1), photo, 128)
>>> crop.shape, crop.dtype, len(box), {"scale", "rotation", "flip"} <= set(params)
((128, 128, 3), dtype('uint8'), 4, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from forenx.data.synth.manipulations import jpeg_roundtrip

__all__ = ["capture_variation"]

#: Crop origins are multiples of this (a JPEG source photo's 8x8 grid stays aligned with the crop's).
CROP_ALIGN = 8


def aligned_crop(rng: np.random.Generator, photo: np.ndarray, side: int) -> tuple[np.ndarray, list[int]]:
    """A ``side`` x ``side`` crop whose origin is a multiple of :data:`CROP_ALIGN`, and its box."""
    h, w = photo.shape[:2]
    y = CROP_ALIGN * int(rng.integers(0, (h - side) // CROP_ALIGN + 1))
    x = CROP_ALIGN * int(rng.integers(0, (w - side) // CROP_ALIGN + 1))
    return np.ascontiguousarray(photo[y:y + side, x:x + side]), [x, y, x + side, y + side]


def capture_variation(rng: np.random.Generator, photo: np.ndarray, size: int
                      ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """A ``size`` x ``size`` crop of ``photo`` through a random global capture variation.

    Returns (uint8 crop, the box it was cut from in the photo, the variation's parameters).
    Each step happens with its own probability: downscale by 1-2x (half the crops), a rotation
    by a multiple of 90 degrees and a mirror, exposure (gamma 0.7-1.4, channel gains 0.9-1.1),
    greyscale (15%), Gaussian blur of sigma 0.4-1.2 px (15%), sensor noise of sigma 1-5 grey
    levels (20%), a JPEG save at quality 70-95 (25%).
    """
    h, w = photo.shape[:2]
    scale = float(rng.uniform(0.5, 1.0)) if rng.random() < 0.5 else 1.0
    side = min(int(np.ceil(size / scale)), h, w)
    crop, box = aligned_crop(rng, photo, side)
    params: dict[str, Any] = {"scale": round(size / side, 4)}
    if side != size:
        filt = "lanczos" if rng.random() < 0.5 else "box"
        resample = Image.Resampling.LANCZOS if filt == "lanczos" else Image.Resampling.BOX
        crop = np.asarray(Image.fromarray(crop).resize((size, size), resample))
        params["downscale_filter"] = filt
    turns, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    crop = np.rot90(crop, turns)
    if flip:
        crop = crop[:, ::-1]
    params.update(rotation=90 * turns, flip=flip)
    image = crop.astype(np.float64) / 255.0
    if rng.random() < 0.5:
        gains, gamma = rng.uniform(0.9, 1.1, 3), float(rng.uniform(0.7, 1.4))
        image = np.clip(image * gains, 0.0, 1.0) ** gamma
        params.update(channel_gains=[round(float(g), 3) for g in gains], gamma=round(gamma, 3))
    if rng.random() < 0.15:
        image = image.mean(2, keepdims=True).repeat(3, 2)
        params["greyscale"] = True
    if rng.random() < 0.15:
        sigma = float(rng.uniform(0.4, 1.2))
        image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
        params["blur_sigma"] = round(sigma, 3)
    if rng.random() < 0.2:
        sigma = float(rng.uniform(1.0, 5.0))
        shape = image.shape[:2] + (1,) if rng.random() < 0.3 else image.shape  # luminance or colour noise
        image = image + rng.normal(0.0, sigma / 255.0, shape)
        params["noise_sigma"] = round(sigma, 3)
    out = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < 0.25:
        quality = int(rng.integers(70, 96))
        out = jpeg_roundtrip(np.ascontiguousarray(out), quality)
        params["jpeg_quality"] = quality
    return np.ascontiguousarray(out), box, params
