"""ForgerySynth's manipulation families: pure functions with exact ground truth.

Each family is a function ``(image, rng, *, donor=None) -> Manipulation``: ``image`` is an RGB
uint8 array (H, W, 3), ``rng`` a :class:`numpy.random.Generator`, ``donor`` another photograph's
crop (only splicing uses it). Nothing else is read, so the same inputs give the same output.

Ground truth, defined precisely:

- ``mask`` (uint8, 255 = changed) is exactly the set of pixels where ``forged`` differs from
  ``image`` in any channel. A pixel inside the manipulated region that the operation happens to
  leave unchanged (a black pixel under a gain, a flat patch under a blur) is *not* in the mask;
  the region the operation was applied to is kept in ``params["region_box"]``. For the JPEG family
  the whole recompressed region changes, so the mask is (almost always) the whole region.
- Every quadruple's ``box`` is the bounding box of its changed pixels, ``[x0, y0, x1, y1]`` with
  exclusive ends (``x1 - x0`` is the width), and its text states the place (in words and in
  pixels), what was done and how strongly, from ``params``.
- ``severity = round(25 + 65 * strength)``: 25 is a subtle edit, 90 a blatant one. ``strength``
  in [0, 1] comes from the family's strength parameter by the rule in :data:`STRENGTH_RULES`.

A draw that changes too few pixels (under a quarter of its region: a flat sky, a black frame) is
redrawn from the same ``rng``; :class:`NoVisibleChange` is raised after a few tries.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from forenx.schema import Quadruple

__all__ = [
    "FAMILIES",
    "FAMILY_NAMES",
    "STRENGTH_RULES",
    "Manipulation",
    "NoVisibleChange",
    "changed_mask",
    "jpeg_roundtrip",
    "manipulation",
    "mask_box",
    "severity_from_strength",
    "where",
]

SEVERITY_FLOOR, SEVERITY_SPAN = 25, 65
_TRIES = 10
_MIN_CHANGED = 0.25


class Manipulation(NamedTuple):
    """One forgery: the forged image, its exact mask, the quadruples, the parameters, a summary."""

    forged: np.ndarray
    mask: np.ndarray
    quadruples: list[Quadruple]
    params: dict[str, Any]
    summary: str


class NoVisibleChange(RuntimeError):
    """The family could not change enough pixels of this image (e.g. a uniform crop)."""


def severity_from_strength(strength: float) -> int:
    """The severity rule: 25 + 65 x strength, strength clipped to [0, 1].

    >>> severity_from_strength(0.0), severity_from_strength(0.5), severity_from_strength(2.0)
    (25, 58, 90)
    """
    return round(SEVERITY_FLOOR + SEVERITY_SPAN * min(max(float(strength), 0.0), 1.0))


def changed_mask(original: np.ndarray, forged: np.ndarray) -> np.ndarray:
    """255 where any channel differs, else 0 (uint8, H x W)."""
    return np.where((original != forged).any(axis=-1), 255, 0).astype(np.uint8)


def mask_box(mask: np.ndarray) -> list[int]:
    """Bounding box ``[x0, y0, x1, y1]`` (exclusive ends) of the non-zero pixels.

    >>> m = np.zeros((8, 8), np.uint8); m[2:4, 3:7] = 255
    >>> mask_box(m)
    [3, 2, 7, 4]
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask has no bounding box")
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def where(box: list[int], height: int, width: int) -> str:
    """The box's place in words, from its centre on a 3 x 3 grid.

    >>> where([0, 0, 40, 40], 256, 256), where([100, 100, 150, 150], 256, 256)
    ('upper-left', 'centre')
    """
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    row = ("upper", "middle", "lower")[min(int(cy * 3), 2)]
    col = ("left", "centre", "right")[min(int(cx * 3), 2)]
    if row == "middle":
        return "centre" if col == "centre" else f"centre-{col}"
    return f"{row}-{col}" if col != "centre" else f"{row}-centre"


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as baseline JPEG (4:2:0) at ``quality`` and decode; the grid starts at pixel (0, 0)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- regions


def _box_size(rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> tuple[int, int]:
    bh = int(rng.integers(max(4, int(lo * h)), max(5, int(hi * h)) + 1))
    bw = int(rng.integers(max(4, int(lo * w)), max(5, int(hi * w)) + 1))
    return min(bh, h), min(bw, w)


def _place(rng: np.random.Generator, h: int, w: int, bh: int, bw: int) -> tuple[int, int]:
    return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))


def _region(rng: np.random.Generator, h: int, w: int, lo: float, hi: float, shapes=("rectangle", "ellipse")):
    """A random region: (boolean mask, [x0, y0, x1, y1], shape)."""
    bh, bw = _box_size(rng, h, w, lo, hi)
    y0, x0 = _place(rng, h, w, bh, bw)
    shape = shapes[int(rng.integers(len(shapes)))]
    region = np.zeros((h, w), bool)
    if shape == "rectangle":
        region[y0:y0 + bh, x0:x0 + bw] = True
    else:
        yy, xx = np.mgrid[0:bh, 0:bw]
        inside = ((yy + 0.5 - bh / 2) / (bh / 2)) ** 2 + ((xx + 0.5 - bw / 2) / (bw / 2)) ** 2 <= 1.0
        region[y0:y0 + bh, x0:x0 + bw] = inside
    return region, [x0, y0, x0 + bw, y0 + bh], shape


def _overlap(a: list[int], b: list[int], gap: int = 0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _pick(rng: np.random.Generator, *options: str) -> str:
    return options[int(rng.integers(len(options)))]


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _fmt_box(box: list[int]) -> str:
    return f"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]"


def _paste(image: np.ndarray, source: np.ndarray, region: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[region] = source[region]
    return out


# ------------------------------------------------------------------------------------ the families
# Each _draw_* returns (forged, params, region_pixels); each _describe_* writes the text from the
# params, the changed pixels' box and its place in words. Templates vary the wording with the rng;
# every template states the same facts.


#: Family name -> the names its anomaly is written under (one is drawn per sample). The model's
#: anomaly-name head (``forensic_names="forgerysynth"``) predicts the family from these.
FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    "copy_move": ("Copy-move duplication", "Duplicated region", "Cloned patch"),
    "splicing": ("Spliced region", "Foreign content", "Splicing"),
    "inpainting": ("Inpainted region", "Smoothed fill", "Content removal"),
    "resampling": ("Resampled region", "Upsampling traces", "Rescaled patch"),
    "noise_mismatch": ("Noise-level mismatch", "Inconsistent noise", "Added noise"),
    "double_jpeg": ("Double JPEG compression", "Misaligned JPEG grid", "Local recompression"),
    "lighting": ("Lighting mismatch", "Inconsistent illumination", "Colour/brightness mismatch"),
    "blur_mismatch": ("Blur mismatch", "Local blur", "Inconsistent sharpness"),
    "clone_stamp": ("Clone-stamp repetition", "Repeated stamp", "Clone-tool traces"),
    "sharpening": ('Local oversharpening', 'Sharpening halo', 'Inconsistent sharpening'),
}


def _draw_copy_move(image, rng, donor):
    h, w = image.shape[:2]
    for _ in range(50):
        bh, bw = _box_size(rng, h, w, 0.15, 0.35)
        sy, sx = _place(rng, h, w, bh, bw)
        ty, tx = _place(rng, h, w, bh, bw)
        src, dst = [sx, sy, sx + bw, sy + bh], [tx, ty, tx + bw, ty + bh]
        if not _overlap(src, dst):
            break
    else:
        raise NoVisibleChange("no room for two disjoint patches")
    forged = image.copy()
    forged[ty:ty + bh, tx:tx + bw] = image[sy:sy + bh, sx:sx + bw]
    area = bh * bw / (h * w)
    params = {"source_box": src, "region_box": dst, "patch_size": [bw, bh], "offset": [tx - sx, ty - sy],
              "area_fraction": round(area, 4), "strength": round(min(area / 0.1, 1.0), 4)}
    return forged, params, bh * bw


def _describe_copy_move(p, box, place, rng):
    src = _fmt_box(p["source_box"])
    name = _pick(rng, *FAMILY_NAMES["copy_move"])
    phenomenon = _pick(
        rng,
        f"The {p['patch_size'][0]}x{p['patch_size'][1]} px patch at {_fmt_box(box)} in the {place} "
        f"repeats, pixel for pixel, the content at {src}.",
        f"In the {place}, the area {_fmt_box(box)} is an exact copy of the area {src} "
        f"(shifted by {p['offset'][0]}, {p['offset'][1]} px).",
        f"Identical texture appears twice: at {src} and again at {_fmt_box(box)} ({place}).",
    )
    reasoning = _pick(
        rng,
        "Natural scenes never repeat a region exactly down to the noise; an exact duplicate means "
        "part of the image was copied and pasted within itself.",
        "Even repeated objects differ in noise and lighting; a pixel-identical repeat is the trace "
        "of a copy-move edit.",
        "Camera noise is independent from place to place, so two identical areas cannot both come "
        "from the sensor: one was pasted from the other.",
    )
    summary = f"A region in the {place} was copied from elsewhere in the same image."
    return [(name, phenomenon, reasoning)], summary


def _draw_splicing(image, rng, donor):
    if donor is None:
        raise ValueError("splicing needs a donor crop from another photograph (donor=...)")
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.2, 0.4)
    bw, bh = box[2] - box[0], box[3] - box[1]
    dy, dx = _place(rng, donor.shape[0], donor.shape[1], bh, bw)
    patch = np.zeros_like(image)
    patch[box[1]:box[3], box[0]:box[2]] = donor[dy:dy + bh, dx:dx + bw]
    forged = _paste(image, patch, region)
    area = int(region.sum()) / (h * w)
    diff = float(np.abs(forged[region].astype(np.float64) - image[region].astype(np.float64)).mean())
    params = {"region_box": box, "shape": shape, "donor_box": [dx, dy, dx + bw, dy + bh],
              "area_fraction": round(area, 4), "mean_abs_difference": round(diff, 2),
              "strength": round(min(area / 0.12, 1.0), 4)}
    return forged, params, int(region.sum())


def _describe_splicing(p, box, place, rng):
    name = _pick(rng, *FAMILY_NAMES["splicing"])
    phenomenon = _pick(
        rng,
        f"{_a(p['shape']).capitalize()}-shaped area at {_fmt_box(box)} in the {place} holds content from a "
        f"different photograph, with hard edges against its surroundings.",
        f"The {place} area {_fmt_box(box)} does not continue the scene around it: {_a(p['shape'])} "
        f"of another photo's content was pasted there.",
        f"Content at {_fmt_box(box)} ({place}) was taken from another image; its texture, colour "
        f"and noise break off at the {p['shape']}'s border.",
    )
    reasoning = _pick(
        rng,
        "Structures and noise that stop abruptly at a sharp boundary show that the area was "
        "inserted from another source.",
        "A region whose content, lighting and noise do not match the rest of the image, cut off "
        "along a clean outline, is the signature of splicing.",
        "Two photographs never share sensor noise and lighting; their seam gives the insertion away.",
    )
    summary = f"Content from another photograph was spliced into the {place}."
    return [(name, phenomenon, reasoning)], summary


def _draw_inpainting(image, rng, donor):
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.12, 0.3)
    sigma = round(max(box[2] - box[0], box[3] - box[1]) / 4.0, 2)
    known = (~region).astype(np.float64)
    # Normalised convolution: a Gaussian average of the known pixels only, i.e. a smooth fill
    # diffused in from the border, like diffusion-based inpainting.
    weight = ndimage.gaussian_filter(known, sigma, mode="reflect")
    fill = np.empty(image.shape, np.float64)
    for c in range(3):
        fill[..., c] = ndimage.gaussian_filter(image[..., c] * known, sigma, mode="reflect")
    fill /= np.maximum(weight, 1e-6)[..., None]
    filled = np.clip(np.rint(fill), 0, 255).astype(np.uint8)
    forged = _paste(image, filled, region)
    area = int(region.sum()) / (h * w)
    params = {"region_box": box, "shape": shape, "fill": "normalised Gaussian diffusion from the border",
              "fill_sigma": sigma, "area_fraction": round(area, 4),
              "strength": round(min(area / 0.06, 1.0), 4)}
    return forged, params, int(region.sum())


def _describe_inpainting(p, box, place, rng):
    name = _pick(rng, *FAMILY_NAMES["inpainting"])
    phenomenon = _pick(
        rng,
        f"{_a(p['shape']).capitalize()} at {_fmt_box(box)} in the {place} is a smooth, textureless blend of the "
        f"colours around it.",
        f"The {place} area {_fmt_box(box)} has no detail and no noise; its colours fade smoothly "
        f"in from its border.",
        f"Texture and grain vanish inside {_fmt_box(box)} ({place}), replaced by a soft gradient.",
    )
    reasoning = _pick(
        rng,
        "A camera records texture and noise everywhere; a perfectly smooth patch filled in from "
        "its border means something was removed and painted over.",
        "Diffusion-style inpainting leaves blurry, noise-free fills, unlike any real surface.",
        "The missing sensor noise and the gradient from the edges betray an area that was erased "
        "and filled.",
    )
    summary = f"Something in the {place} was erased and filled with a smooth blend of its surroundings."
    return [(name, phenomenon, reasoning)], summary


def _draw_resampling(image, rng, donor):
    h, w = image.shape[:2]
    _, box, _ = _region(rng, h, w, 0.2, 0.4, shapes=("rectangle",))
    bw, bh = box[2] - box[0], box[3] - box[1]
    factor = round(float(rng.uniform(1.25, 2.5)), 2)
    sw, sh = max(2, round(bw / factor)), max(2, round(bh / factor))
    sx, sy = box[0] + (bw - sw) // 2, box[1] + (bh - sh) // 2
    window = Image.fromarray(image[sy:sy + sh, sx:sx + sw])
    forged = image.copy()
    forged[box[1]:box[3], box[0]:box[2]] = np.asarray(window.resize((bw, bh), Image.Resampling.BILINEAR))
    params = {"region_box": box, "scale_factor": factor, "interpolation": "bilinear",
              "source_window": [sx, sy, sx + sw, sy + sh],
              "strength": round(min(max((factor - 1.2) / 1.3, 0.0), 1.0), 4)}
    return forged, params, bw * bh


def _describe_resampling(p, box, place, rng):
    f = p["scale_factor"]
    name = _pick(rng, *FAMILY_NAMES["resampling"])
    phenomenon = _pick(
        rng,
        f"The {place} rectangle {_fmt_box(box)} was enlarged by a factor of {f:.2f} with bilinear "
        f"interpolation: its detail is softer and shows a periodic interpolation pattern.",
        f"Inside {_fmt_box(box)} ({place}) the content is upscaled {f:.2f}x, so neighbouring pixels "
        f"are linear blends repeating with the resampling period.",
        f"A {f:.2f}x bilinear zoom of part of the scene fills {_fmt_box(box)} in the {place}; "
        f"objects there look magnified relative to the border.",
    )
    reasoning = _pick(
        rng,
        "Upsampling makes pixels linear combinations of their neighbours on a periodic grid, a "
        "correlation that a camera sensor does not produce.",
        "Only one part of the image carries interpolation periodicity and a different scale, so "
        "that part was resized and pasted back.",
        "Resampling traces confined to a rectangle reveal a local rescale rather than a property "
        "of the whole photograph.",
    )
    summary = f"A rectangle in the {place} was rescaled by {f:.2f}x and pasted back."
    return [(name, phenomenon, reasoning)], summary


def _draw_noise(image, rng, donor):
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.2, 0.45)
    sigma = round(float(rng.uniform(4.0, 20.0)), 1)
    noisy = np.clip(np.rint(image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)), 0, 255)
    forged = _paste(image, noisy.astype(np.uint8), region)
    params = {"region_box": box, "shape": shape, "noise": "additive Gaussian, independent per channel",
              "noise_sigma": sigma, "strength": round(min(max((sigma - 3.0) / 15.0, 0.0), 1.0), 4)}
    return forged, params, int(region.sum())


def _describe_noise(p, box, place, rng):
    s = p["noise_sigma"]
    name = _pick(rng, *FAMILY_NAMES["noise_mismatch"])
    phenomenon = _pick(
        rng,
        f"The {p['shape']} at {_fmt_box(box)} in the {place} is grainier than the rest: Gaussian "
        f"noise with sigma {s:.1f} (0-255 scale) was added there.",
        f"Noise in the {place} area {_fmt_box(box)} is stronger (extra sigma {s:.1f} grey levels) "
        f"than in the rest of the image.",
        f"A patch of heavier grain, sigma {s:.1f}, covers {_fmt_box(box)} ({place}).",
    )
    reasoning = _pick(
        rng,
        "One sensor gives one noise level for a given brightness; a region with a different noise "
        "level was processed separately or comes from elsewhere.",
        "Noise that changes abruptly at a region's border is not produced by a camera.",
        "A local jump in noise variance is a classic trace of a pasted or retouched area.",
    )
    summary = f"Extra noise (sigma {s:.1f}) was added to a region in the {place}."
    return [(name, phenomenon, reasoning)], summary


def _draw_double_jpeg(image, rng, donor):
    h, w = image.shape[:2]
    _, box, _ = _region(rng, h, w, 0.2, 0.45, shapes=("rectangle",))
    q1 = int(rng.integers(55, 96))
    q2 = int(rng.integers(50, 91))
    while abs(q1 - q2) < 10:
        q2 = int(rng.integers(50, 91))
    dx, dy = 0, 0
    while dx == 0 and dy == 0:
        dx, dy = int(rng.integers(0, 8)), int(rng.integers(0, 8))
    x0, y0, x1, y1 = box
    # First compression on the image's own grid, second on a grid shifted by (dx, dy): the region
    # carries two misaligned block grids; the rest of the image stays as it was.
    first = image.copy()
    first[y0:y1, x0:x1] = jpeg_roundtrip(image, q1)[y0:y1, x0:x1]
    second = first.copy()
    second[dy:, dx:] = jpeg_roundtrip(np.ascontiguousarray(first[dy:, dx:]), q2)
    forged = image.copy()
    forged[y0:y1, x0:x1] = second[y0:y1, x0:x1]
    params = {"region_box": box, "jpeg_quality_first": q1, "jpeg_quality_second": q2,
              "grid_shift": [dx, dy], "chroma_subsampling": "4:2:0",
              "strength": round(min(max((100 - min(q1, q2)) / 50.0, 0.0), 1.0), 4)}
    return forged, params, (x1 - x0) * (y1 - y0)


def _describe_double_jpeg(p, box, place, rng):
    q1, q2, (dx, dy) = p["jpeg_quality_first"], p["jpeg_quality_second"], p["grid_shift"]
    name = _pick(rng, *FAMILY_NAMES["double_jpeg"])
    phenomenon = _pick(
        rng,
        f"The {place} rectangle {_fmt_box(box)} was JPEG-compressed at quality {q1} and again at "
        f"quality {q2} with the 8x8 grid shifted by ({dx}, {dy}) px.",
        f"Blocking artefacts inside {_fmt_box(box)} ({place}) follow two 8x8 grids: one aligned "
        f"(quality {q1}) and one offset by {dx} px horizontally and {dy} px vertically (quality {q2}).",
        f"The area {_fmt_box(box)} in the {place} carries JPEG blocking from a quality-{q1} pass "
        f"and a quality-{q2} pass on a grid moved by ({dx}, {dy}).",
    )
    reasoning = _pick(
        rng,
        "A block grid inside one region that does not line up with the image's own 8x8 grid means "
        "that region was compressed separately and pasted in.",
        "A shifted second JPEG grid is what a cropped, recompressed and re-inserted patch leaves.",
        "The rest of the image does not share this compression history, so the region was "
        "processed on its own.",
    )
    summary = f"A region in the {place} was recompressed as JPEG (quality {q1} then {q2}) on a shifted grid."
    return [(name, phenomenon, reasoning)], summary


def _draw_lighting(image, rng, donor):
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.25, 0.5)
    if rng.random() < 0.5:
        gain = round(float(rng.uniform(0.6, 0.85)), 3)
    else:
        gain = round(float(rng.uniform(1.2, 1.6)), 3)
    channel = int(rng.integers(3))
    cast = round(float(rng.uniform(-0.15, 0.15)), 3)
    gains = [gain, gain, gain]
    gains[channel] = round(gain * (1.0 + cast), 4)
    lit = np.clip(np.rint(image.astype(np.float64) * np.array(gains)), 0, 255).astype(np.uint8)
    forged = _paste(image, lit, region)
    strength = max(abs(math.log(g)) for g in gains) / math.log(1.6)
    params = {"region_box": box, "shape": shape, "gain": gain, "channel_gains": gains,
              "cast_channel": "RGB"[channel], "cast": cast, "strength": round(min(strength, 1.0), 4)}
    return forged, params, int(region.sum())


_CAST = {"R": ("reddish", "cyan-ish"), "G": ("greenish", "magenta-ish"), "B": ("bluish", "yellowish")}


def _describe_lighting(p, box, place, rng):
    gain, gains = p["gain"], p["channel_gains"]
    direction = "brighter" if gain > 1 else "darker"
    tint = _CAST[p["cast_channel"]][0 if p["cast"] >= 0 else 1]
    cast = f", with a {tint} cast" if abs(p["cast"]) >= 0.05 else ""
    gain_text = f"R x{gains[0]:.2f}, G x{gains[1]:.2f}, B x{gains[2]:.2f}"
    name = _pick(rng, *FAMILY_NAMES["lighting"])
    phenomenon = _pick(
        rng,
        f"The {p['shape']} at {_fmt_box(box)} in the {place} is {direction} than its surroundings"
        f"{cast} (channel gains {gain_text}).",
        f"Brightness and colour change abruptly at the border of {_fmt_box(box)} ({place}): the "
        f"area was scaled by {gain_text}{cast}.",
        f"A {direction} {p['shape']} ({gain_text}) sits in the {place} at {_fmt_box(box)}{cast}.",
    )
    reasoning = _pick(
        rng,
        "Light falls smoothly across a scene; a region with its own gain and colour balance ending "
        "at a sharp edge was adjusted or inserted separately.",
        "A step in exposure and white balance along an arbitrary outline has no physical light "
        "source behind it.",
        "The same surface cannot be lit differently inside and outside a clean geometric border.",
    )
    summary = f"A region in the {place} was made {direction} ({gain_text})."
    return [(name, phenomenon, reasoning)], summary


def _draw_blur(image, rng, donor):
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.2, 0.45)
    sigma = round(float(rng.uniform(1.0, 4.0)), 1)
    blurred = ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0), mode="reflect")
    forged = _paste(image, np.clip(np.rint(blurred), 0, 255).astype(np.uint8), region)
    params = {"region_box": box, "shape": shape, "blur": "Gaussian", "blur_sigma": sigma,
              "strength": round(min(max((sigma - 0.8) / 3.2, 0.0), 1.0), 4)}
    return forged, params, int(region.sum())


def _describe_blur(p, box, place, rng):
    s = p["blur_sigma"]
    name = _pick(rng, *FAMILY_NAMES["blur_mismatch"])
    phenomenon = _pick(
        rng,
        f"The {p['shape']} at {_fmt_box(box)} in the {place} is blurred (Gaussian, sigma {s:.1f} px) "
        f"while the pixels around it keep their original sharpness.",
        f"Edges inside {_fmt_box(box)} ({place}) are softened by a Gaussian blur of sigma {s:.1f} px "
        f"that stops at the region's border.",
        f"A {s:.1f}-px Gaussian blur covers {_a(p['shape'])} in the {place} ({_fmt_box(box)}).",
    )
    reasoning = _pick(
        rng,
        "Defocus changes smoothly with depth; a blur that starts and stops along a sharp outline "
        "was applied by editing.",
        "Sharpness that jumps at a region's border, not at a depth boundary, reveals local "
        "retouching.",
        "Local blurring is used to hide edits and seams; its border gives it away.",
    )
    summary = f"A region in the {place} was blurred (sigma {s:.1f} px)."
    return [(name, phenomenon, reasoning)], summary


def _draw_clone_stamp(image, rng, donor):
    h, w = image.shape[:2]
    patch = int(rng.integers(10, 21))
    count = int(rng.integers(3, 7))
    sy, sx = _place(rng, h, w, patch, patch)
    source = [sx, sy, sx + patch, sy + patch]
    # Stamps cluster in one area, as a retoucher clones over a blemish.
    area = min(patch * 5, h, w)
    ay, ax = _place(rng, h, w, area, area)
    stamps: list[list[int]] = []
    for _ in range(200):
        if len(stamps) == count:
            break
        y = ay + int(rng.integers(0, area - patch + 1))
        x = ax + int(rng.integers(0, area - patch + 1))
        box = [x, y, x + patch, y + patch]
        if _overlap(box, source, gap=1) or any(_overlap(box, b, gap=1) for b in stamps):
            continue
        stamps.append(box)
    if len(stamps) < 2:
        raise NoVisibleChange("no room for clone stamps")
    forged = image.copy()
    for x0, y0, x1, y1 in stamps:
        forged[y0:y1, x0:x1] = image[sy:sy + patch, sx:sx + patch]
    params = {"source_box": source, "stamp_boxes": stamps, "patch_size": patch, "count": len(stamps),
              "strength": round(min(max((len(stamps) - 1) / 5.0, 0.0), 1.0), 4)}
    return forged, params, patch * patch * len(stamps)


def _describe_clone_stamp(p, box, place, rng):
    n, size, src = p["count"], p["patch_size"], _fmt_box(p["source_box"])
    name = _pick(rng, *FAMILY_NAMES["clone_stamp"])
    phenomenon = _pick(
        rng,
        f"The same {size}x{size} px patch (from {src}) is stamped {n} times within {_fmt_box(box)} "
        f"in the {place}.",
        f"In the {place} ({_fmt_box(box)}), {n} small squares of {size} px are identical copies of "
        f"the texture at {src}.",
        f"{n} pixel-identical {size}-px tiles repeat across {_fmt_box(box)} ({place}), all cloned "
        f"from {src}.",
    )
    reasoning = _pick(
        rng,
        "Texture repeating exactly several times over a small area is the mark of a clone-stamp "
        "tool used to paint over something.",
        "Natural texture never repeats pixel for pixel; several identical tiles show retouching.",
        "Identical noise in several places cannot come from a sensor: the area was cloned.",
    )
    summary = f"A small patch was clone-stamped {n} times in the {place}."
    return [(name, phenomenon, reasoning)], summary


def _draw_sharpening(image, rng, donor):
    h, w = image.shape[:2]
    region, box, shape = _region(rng, h, w, 0.2, 0.45)
    amount = round(float(rng.uniform(0.8, 2.5)), 2)
    radius = round(float(rng.uniform(1.0, 2.5)), 1)
    base = image.astype(np.float64)
    detail = base - ndimage.gaussian_filter(base, (radius, radius, 0), mode="reflect")
    sharp = np.clip(np.rint(base + amount * detail), 0, 255).astype(np.uint8)
    forged = _paste(image, sharp, region)
    params = {"region_box": box, "shape": shape, "filter": "unsharp mask", "amount": amount,
              "radius": radius, "strength": round(min(amount / 2.5, 1.0), 4)}
    return forged, params, int(region.sum())


def _describe_sharpening(p, box, place, rng):
    a, r = p["amount"], p["radius"]
    name = _pick(rng, *FAMILY_NAMES["sharpening"])
    phenomenon = _pick(
        rng,
        f"The {p['shape']} at {_fmt_box(box)} in the {place} is oversharpened (unsharp mask, amount "
        f"{a:.2f}, radius {r:.1f} px): edges there carry bright and dark halos.",
        f"Edges inside {_fmt_box(box)} ({place}) have halos and crisper contrast than the rest, from "
        f"an unsharp mask of amount {a:.2f} and radius {r:.1f} px.",
        f"An unsharp mask ({a:.2f} amount, {r:.1f}-px radius) was applied only to {_fmt_box(box)} in "
        f"the {place}.",
    )
    reasoning = _pick(
        rng,
        "Sharpening applied to one region only leaves a change in edge contrast and halos that "
        "stop at its border.",
        "A camera sharpens the whole frame alike; a locally sharpened region was edited apart.",
        "Halo artefacts confined to an outline reveal local post-processing.",
    )
    summary = f"A region in the {place} was sharpened with an unsharp mask (amount {a:.2f})."
    return [(name, phenomenon, reasoning)], summary


#: Family name -> (draw, describe, strength rule in words).
_FAMILY_PARTS: dict[str, tuple[Callable, Callable, str]] = {
    "copy_move": (_draw_copy_move, _describe_copy_move, "area fraction of the pasted patch / 0.10"),
    "splicing": (_draw_splicing, _describe_splicing, "area fraction of the spliced region / 0.12"),
    "inpainting": (_draw_inpainting, _describe_inpainting, "area fraction of the filled region / 0.06"),
    "resampling": (_draw_resampling, _describe_resampling, "(scale factor - 1.2) / 1.3; factor in [1.25, 2.5]"),
    "noise_mismatch": (_draw_noise, _describe_noise, "(noise sigma - 3) / 15; sigma in [4, 20] grey levels"),
    "double_jpeg": (_draw_double_jpeg, _describe_double_jpeg,
                    "(100 - lower JPEG quality) / 50; qualities in [50, 95], at least 10 apart"),
    "lighting": (_draw_lighting, _describe_lighting,
                 "largest abs(ln(channel gain)) / ln(1.6); gain in [0.6, 0.85] or [1.2, 1.6], cast up to 15%"),
    "blur_mismatch": (_draw_blur, _describe_blur, "(blur sigma - 0.8) / 3.2; sigma in [1, 4] px"),
    "clone_stamp": (_draw_clone_stamp, _describe_clone_stamp, "(number of stamps - 1) / 5; 2 to 6 stamps"),
    "sharpening": (_draw_sharpening, _describe_sharpening, "unsharp-mask amount / 2.5; amount in [0.8, 2.5]"),
}

#: Family name -> how its strength (0..1) is computed from its parameters.
STRENGTH_RULES: dict[str, str] = {name: parts[2] for name, parts in _FAMILY_PARTS.items()}


def _family(name: str) -> Callable[..., Manipulation]:
    draw, describe, _ = _FAMILY_PARTS[name]

    def apply(image: np.ndarray, rng: np.random.Generator, *, donor: np.ndarray | None = None) -> Manipulation:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name}: image must be an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        for _ in range(_TRIES):
            forged, params, region_pixels = draw(image, rng, donor)
            mask = changed_mask(image, forged)
            if np.count_nonzero(mask) >= _MIN_CHANGED * region_pixels:
                break
        else:
            raise NoVisibleChange(f"{name}: {_TRIES} draws changed under {_MIN_CHANGED:.0%} of their region")
        box = mask_box(mask)
        place = where(box, h, w)
        severity = severity_from_strength(params["strength"])
        texts, summary = describe(params, box, place, rng)
        quadruples = [Quadruple(name=n, phenomenon=ph, reasoning=r, severity=severity, source="synth",
                                box=[float(v) for v in box]) for n, ph, r in texts]
        params = {"family": name, **params, "changed_box": box, "changed_pixels": int(np.count_nonzero(mask)),
                  "location": place, "severity": severity}
        return Manipulation(forged, mask, quadruples, params, summary)

    apply.__name__ = name
    apply.__qualname__ = name
    apply.__doc__ = f"The {name} family; strength = {STRENGTH_RULES[name]}."
    return apply


#: Family name -> manipulation function ``(image, rng, *, donor=None) -> Manipulation``.
FAMILIES: dict[str, Callable[..., Manipulation]] = {name: _family(name) for name in _FAMILY_PARTS}


def manipulation(name: str) -> Callable[..., Manipulation]:
    """The manipulation function of a family.

    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> result = manipulation("noise_mismatch")(image, np.random.default_rng(1))
    >>> bool(((result.mask > 0) == (result.forged != image).any(-1)).all())
    True
    >>> result.quadruples[0].box == [float(v) for v in mask_box(result.mask)]
    True
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown manipulation family {name!r}; choose from {', '.join(FAMILIES)}") from None
