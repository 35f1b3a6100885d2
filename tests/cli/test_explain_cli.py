"""`forenx explain` end to end: a tiny model saved in a temporary folder, files the tests create."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from forenx.cli import app
from forenx.cli.explain import expand_paths
from forenx.inference import explainer as explainer_module
from forenx.inference.report import validate_report_json
from forenx.modeling.builder import tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    model, processor = tiny_model(seed=0)
    folder = tmp_path_factory.mktemp("tiny-forenx")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8  # after the signature: length(4) "IHDR"(4) data(13) crc(4)
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])))
    return bytes(data)


def bad_and_odd_inputs(folder: Path) -> dict[str, str]:
    """Write every awkward input; return file name -> "ok" or the text its error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    (folder / "zero.jpg").write_bytes(b"")
    expected["zero.jpg"] = "empty file (0 bytes)"
    buffer = io.BytesIO()
    photo(200, 150).save(buffer, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    expected["truncated.jpg"] = "corrupt or truncated image"
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    expected["notes.jpg"] = "not an image file"
    (folder / "bomb.png").write_bytes(png_claiming_size(100_000, 100_000))
    expected["bomb.png"] = "decompression bomb"
    photo(3000, 2000, seed=1).save(folder / "huge.jpg", quality=85)  # large but within the pixel limit
    expected["huge.jpg"] = "ok"
    Image.new("CMYK", (64, 48), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    expected["cmyk.jpg"] = "ok"
    Image.fromarray(np.linspace(0, 65535, 48 * 64, dtype=np.uint16).reshape(48, 64)).save(folder / "deep16.png")
    expected["deep16.png"] = "ok"
    palette = photo().convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(folder / "palette_alpha.png", transparency=0)
    expected["palette_alpha.png"] = "ok"
    frames = [photo(seed=s) for s in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    expected["animated.gif"] = "ok"
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], duration=50)
    expected["animated.webp"] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(80, 40).save(folder / "rotated.jpg", exif=exif)
    expected["rotated.jpg"] = "ok"
    locked = folder / "locked.png"
    photo().save(locked)
    locked.chmod(0)
    # As root, permissions do not stop reads: the file is then explained like any other.
    expected["locked.png"] = "ok" if os.geteuid() == 0 else "cannot be read"
    return expected


def test_bad_inputs_each_get_a_message_and_the_batch_goes_on(model_dir, tmp_path):
    expected = bad_and_odd_inputs(tmp_path / "in")
    missing = tmp_path / "in" / "nowhere.png"
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", str(tmp_path / "in"), str(missing), "--model", str(model_dir),
                                 "--batch-size", "4", "--max-new-tokens", "4", "--format", "json",
                                 "--out", str(out), "--device", "cpu"])
    try:
        assert result.exit_code == 1, result.output  # some files failed
        document = json.loads((out / "reports.json").read_text())
        validate_report_json(document)
        reports = {Path(r["image"]).name: r for r in document["reports"]}
        assert set(reports) == set(expected) | {"nowhere.png"}
        assert "file not found" in reports["nowhere.png"]["error"]
        for name, outcome in expected.items():
            report = reports[name]
            if outcome == "ok":
                assert report["error"] is None, (name, report["error"])
                assert 0.0 <= report["prob_fake"] <= 1.0
            else:
                assert outcome in report["error"], (name, report["error"])
                assert name in report["error"]  # the message names the file
        # One file per image, written batch by batch, errors included.
        assert {p.name for p in out.glob("*.json")} == {f"{name}.json" for name in reports} | {"reports.json"}
        single = json.loads((out / "huge.jpg.json").read_text())
        validate_report_json(single)
        assert single["image"].endswith("huge.jpg") and single["evidence"]
        failed = sum(outcome != "ok" for outcome in expected.values()) + 1
        assert f"{len(reports) - failed} of {len(reports)} image(s) explained, {failed} failed" in result.output
    finally:
        (tmp_path / "in" / "locked.png").chmod(0o644)


def test_formats_text_markdown_and_html(model_dir, tmp_path):
    folder = tmp_path / "shots"
    (folder / "nested").mkdir(parents=True)
    photo(seed=1).save(folder / "a.png")
    photo(seed=2).save(folder / "nested" / "a.png")  # the same name from another folder
    photo(seed=3).save(folder / "b.jpg")
    common = ["--model", str(model_dir), "--max-new-tokens", "3", "--batch-size", "2"]

    text = runner.invoke(app, ["explain", str(folder / "b.jpg"), *common, "--no-evidence"])
    assert text.exit_code == 0, text.output
    assert "b.jpg" in text.output and "P(fake) =" in text.output

    html_out = tmp_path / "html"
    html = runner.invoke(app, ["explain", str(folder), *common, "--format", "html", "--out", str(html_out)])
    assert html.exit_code == 0, html.output
    assert sorted(p.name for p in html_out.iterdir()) == ["a.png-2.html", "a.png.html", "b.jpg.html", "reports.json"]
    page = (html_out / "b.jpg.html").read_text()
    assert 'class="heatmap"' in page and 'class="ela"' in page and "evidence:" in page

    markdown = runner.invoke(app, ["explain", str(folder / "*.png"), *common, "--format", "md", "--no-evidence"])
    assert markdown.exit_code == 0, markdown.output
    assert markdown.output.count("## ") == 1 and "a.png" in markdown.output and "**P(fake):**" in markdown.output


def test_json_to_stdout_is_valid_and_seeded_sampling_repeats(model_dir, tmp_path):
    photo(seed=4).save(tmp_path / "x.png")
    args = ["explain", str(tmp_path / "x.png"), "--model", str(model_dir), "--max-new-tokens", "5",
            "--format", "json", "--no-evidence", "--sample", "--temperature", "1.3", "--seed", "11"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output

    def document(output: str) -> dict:
        return json.loads(output[output.index("{"): output.rindex("}") + 1])

    one, two = document(first.output), document(second.output)
    validate_report_json(one)
    assert one["reports"][0]["raw_text"] == two["reports"][0]["raw_text"]


def test_expand_paths_files_folders_globs_and_duplicates(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/one.jpg", "d/e/two.PNG", "d/readme.txt", "three.webp"):
        (tmp_path / name).write_bytes(b"x")
    images, warnings = expand_paths([str(tmp_path / "d"), str(tmp_path / "*.webp"), str(tmp_path / "d" / "one.jpg"),
                                     str(tmp_path / "nothing*.png"), str(tmp_path / "e-missing")])
    assert images == [str(tmp_path / "d" / "e" / "two.PNG"), str(tmp_path / "d" / "one.jpg"),
                      str(tmp_path / "three.webp"), str(tmp_path / "nothing*.png"), str(tmp_path / "e-missing")]
    assert warnings == []
    (tmp_path / "empty").mkdir()
    assert expand_paths([str(tmp_path / "empty")])[1][0].startswith(f"{tmp_path / 'empty'}: no image files")


def test_missing_default_model_and_bad_options_exit_2(monkeypatch, tmp_path):
    photo().save(tmp_path / "x.png")
    monkeypatch.setattr(explainer_module, "DEFAULT_MODEL_DIR", tmp_path / "nano")
    result = runner.invoke(app, ["explain", str(tmp_path / "x.png"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "forenx-nano" in result.output and "--model" in result.output
    bad = runner.invoke(app, ["explain", str(tmp_path / "x.png"), "--format", "pdf"])
    assert bad.exit_code == 2 and "--format 'pdf'" in bad.output
    # A value in brackets is shown as typed, not taken for rich markup.
    bracketed = runner.invoke(app, ["explain", str(tmp_path / "x.png"), "--format", "[bold]"])
    assert bracketed.exit_code == 2 and "--format '[bold]'" in bracketed.output


def test_an_interrupted_run_keeps_every_finished_batch(model_dir, tmp_path, monkeypatch):
    """Fault injection: the user presses Ctrl-C while the second batch runs the model."""
    for seed in range(4):
        photo(seed=seed).save(tmp_path / f"img{seed}.png")
    original, calls = explainer_module.Explainer._run_model, []

    def interrupt_second_batch(self, views):
        calls.append(len(views))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, views)

    monkeypatch.setattr(explainer_module.Explainer, "_run_model", interrupt_second_batch)
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", *(str(tmp_path / f"img{s}.png") for s in range(4)), "--model",
                                 str(model_dir), "--batch-size", "2", "--max-new-tokens", "3", "--format", "md",
                                 "--out", str(out), "--no-evidence"])
    assert result.exit_code != 0 and calls == [2, 2]
    assert sorted(p.name for p in out.iterdir()) == ["img0.png.md", "img1.png.md", "reports.json"]
    kept = json.loads((out / "reports.json").read_text())["reports"]
    assert [Path(r["image"]).name for r in kept] == ["img0.png", "img1.png"]
    assert all(r["prob_fake"] is not None for r in kept)


def test_device_cuda_runs_on_a_gpu_and_is_refused_without_one(model_dir, tmp_path):
    photo().save(tmp_path / "x.png")
    result = runner.invoke(app, ["explain", str(tmp_path / "x.png"), "--model", str(model_dir), "--device", "cuda",
                                 "--max-new-tokens", "3", "--no-evidence"])
    if torch.cuda.is_available():
        assert result.exit_code == 0 and "P(fake) =" in result.output, result.output
    else:
        assert result.exit_code == 2 and "no CUDA device" in result.output
