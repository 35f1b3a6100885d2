"""Image decoding: the failure modes of PITFALLS.md, each with a clear outcome."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from forenx.images import ImageLoadError, load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_png_pixels_are_kept_exactly(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = _save(Image.fromarray(arr), tmp_path / "a.png")
    out = load_image(path)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), arr)


@pytest.mark.parametrize("make,reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, not an image"), "not an image file"),
    (lambda p: None, "file not found"),
])
def test_unusable_files_name_the_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = _save(Image.new("L", (5000, 5000)), tmp_path / "big.png", optimize=True)
    with pytest.raises(ImageLoadError, match="pixel limit"):
        load_image(path, max_pixels=1_000_000)


def test_cmyk_16bit_palette_alpha_and_animation(tmp_path):
    cmyk = load_image(_save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg"))
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200  # red stays red

    deep = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert load_image(_save(deep, tmp_path / "d.png")).getpixel((0, 0)) == (255, 255, 255)

    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    assert load_image(_save(pal, tmp_path / "p.png", transparency=0)).getpixel((0, 0)) == (255, 255, 255)

    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "a.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert load_image(gif).getpixel((0, 0))[0] > 200  # first frame (red)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(img, tmp_path / "r.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


def test_pil_and_bytes_sources(tmp_path):
    img = Image.new("LA", (4, 4), (0, 0))
    assert load_image(img).getpixel((0, 0)) == (255, 255, 255)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, "PNG")
    assert load_image(buf.getvalue()).getpixel((1, 1)) == (1, 2, 3)
