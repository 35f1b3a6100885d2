"""run_evidence: every tool together, and bad files that must never stop a batch."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from forenx.inference.evidence import EVIDENCE_TOOLS, run_evidence


def _jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _png_bomb() -> bytes:
    """A valid PNG whose header claims 100000 x 100000 pixels."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.fixture
def batch(tmp_path, natural_image):
    """Good and bad files side by side, as a user's folder would have them."""
    photo = natural_image(96, 128, 1)
    info = PngInfo()
    info.add_text("parameters", "a dog\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 3")
    files = {
        "empty.jpg": b"",
        "truncated.jpg": _jpeg_bytes(photo)[:600],
        "notes.jpg": b"this is a text file, not a photo\n",
        "bomb.png": _png_bomb(),
        "good.jpg": _jpeg_bytes(photo),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    photo.save(tmp_path / "generated.png", pnginfo=info)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(tmp_path / "deep.png")
    palette = photo.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png", transparency=0)
    frames = [natural_image(64, 64, s) for s in (2, 3)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (tmp_path / "rotated.jpg").write_bytes(_jpeg_bytes(natural_image(40, 80, 4), exif=exif))
    (tmp_path / "folder.jpg").mkdir()
    return tmp_path


def test_a_batch_of_good_and_bad_files_goes_through(batch):
    names = ["empty.jpg", "truncated.jpg", "notes.jpg", "bomb.png", "missing.jpg", "folder.jpg", "good.jpg",
             "generated.png", "cmyk.jpg", "deep.png", "palette.png", "animated.gif", "rotated.jpg"]
    results = {name: run_evidence(batch / name) for name in names}  # nothing may raise
    expected_errors = {"empty.jpg": "empty file", "truncated.jpg": "truncated", "notes.jpg": "not an image",
                       "bomb.png": "decompression bomb", "missing.jpg": "not found", "folder.jpg": "folder"}
    for name, reason in expected_errors.items():
        (error,) = results[name].errors
        assert name in error and reason in error, error
        assert results[name].quadruples == [] and results[name].maps == {}
    for name in set(names) - set(expected_errors):
        assert results[name].errors == [], (name, results[name].errors)
        assert set(results[name].maps) == {"ela", "spectrum"}
        assert set(results[name].timing) == {f"evidence_{t}_s" for t in EVIDENCE_TOOLS}
    assert "Generator parameters in the file" in [q.name for q in results["generated.png"].quadruples]
    # The EXIF orientation is applied before pixel analysis: the map is of the upright image.
    assert results["rotated.jpg"].maps["ela"].shape[:2] == (80, 40)


def test_a_failing_tool_is_reported_and_the_others_still_run(batch, monkeypatch):
    def broken(source, image):
        raise RuntimeError("FFT exploded")

    monkeypatch.setitem(EVIDENCE_TOOLS, "spectrum", broken)
    result = run_evidence(batch / "generated.png")
    assert result.errors == [f"{batch / 'generated.png'}: evidence tool 'spectrum' failed: FFT exploded"]
    assert "ela" in result.maps and any(q.source == "evidence:metadata" for q in result.quadruples)


def test_decoded_image_is_reused_and_in_memory_images_skip_file_tools(batch, natural_image):
    image = natural_image(64, 64, 5)
    from_pil = run_evidence(image)
    assert from_pil.errors == [] and set(from_pil.timing) == {"evidence_ela_s", "evidence_spectrum_s"}
    with_both = run_evidence(batch / "generated.png", image=image, tools=["ela"])
    assert with_both.maps["ela"].shape[:2] == (64, 64)  # the given image, not the file, was analysed


def test_unknown_tool_is_named():
    with pytest.raises(ValueError, match="unknown evidence tool.*'exif'.*choose from"):
        run_evidence(b"x", tools=["exif"])
