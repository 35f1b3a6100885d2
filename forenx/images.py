"""Decoding images safely: the one place every stage (data, training, eval, explain) opens an image.

Forensic traces are fragile, so an image is decoded once and its pixels are kept as they are: no
re-encoding, no resizing here (the processor resizes, with the filter it documents). What is
normalised is what every user of similar toolkits trips on: EXIF orientation, CMYK, 16-bit,
palette with transparency, animated files (first frame) and decompression bombs.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "ImageSource", "MAX_PIXELS", "IMAGE_EXTENSIONS"]

#: Refuse images above this many pixels (a decompression bomb or an unusable giant). 64 Mpx
#: covers every camera and generator output the field uses.
MAX_PIXELS = 64_000_000

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

ImageSource = Union[str, os.PathLike, bytes, Image.Image]


class ImageLoadError(ValueError):
    """An image could not be used; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grey: scale the real range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        maximum = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / maximum * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as every viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, L, 1, P, LAB, HSV


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image to RGB with EXIF orientation applied. Raises :class:`ImageLoadError`.

    ``source`` is a path, the file's bytes, or a PIL image (converted the same way).
    """
    name = "<image>" if isinstance(source, (bytes, Image.Image)) else str(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, bytes):
            data = source
        else:
            path = Path(source)
            if not path.exists():
                raise ImageLoadError(name, "file not found")
            if path.is_dir():
                raise ImageLoadError(name, "is a folder, not an image")
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ImageLoadError(name, f"cannot be read ({exc.strerror or exc})") from exc
        if not data:
            raise ImageLoadError(name, "empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.width * image.height > max_pixels:
                    raise ImageLoadError(
                        name, f"{image.width}x{image.height} exceeds the {max_pixels:,}-pixel limit "
                        "(a decompression bomb or an unusably large image); downscale it first")
                image.seek(0)  # animated GIF / WebP / APNG: the first frame
                image.load()
        except ImageLoadError:
            raise
        except UnidentifiedImageError as exc:
            raise ImageLoadError(name, "not an image file (unrecognised format)") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(name, f"decompression bomb refused ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(name, f"corrupt or truncated image ({exc})") from exc
    if image.width * image.height > max_pixels:
        raise ImageLoadError(name, f"{image.width}x{image.height} exceeds the {max_pixels:,}-pixel limit")
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block must not lose the pixels
        pass
    return _to_rgb(image)
