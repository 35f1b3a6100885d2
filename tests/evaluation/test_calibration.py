"""Post-hoc calibration: temperature and bias fitted on a split, written into the model's config, and
followed by predict_proba, the written verdict and the explainer; bad inputs named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from forenx.cli import app
from forenx.data.io import read_records
from forenx.evaluation.calibration import CalibrationError, calibrate, verdict_logit_differences
from forenx.images import load_image
from forenx.training.checkpoint import load_checkpoint


@pytest.fixture()
def model_dir(tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path)
    return path


def _images(records_file, split=None):
    records = [r for r in read_records(records_file) if split is None or r.split == split]
    return records, [load_image(records_file.parent / r.image) for r in records]


def test_calibrate_writes_temperature_and_bias_that_the_model_then_applies(model_dir, synth_records):
    result = calibrate(model_dir, synth_records, None)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["mapper_temperature"] == result["temperature"] and config["mapper_bias"] == result["bias"]
    assert result["n"] == 12 and result["failed"] == []
    assert result["after"]["nll"] <= result["before"]["nll"] + 1e-9

    _, images = _images(synth_records)
    model, processor = load_checkpoint(model_dir, device="cpu")
    z = verdict_logit_differences(model, processor, images)  # without the bias, before the temperature
    expected = 1 / (1 + np.exp(-(z + result["bias"]) / result["temperature"]))
    p = model.predict_proba(**processor.verdict_inputs(images)).numpy()
    np.testing.assert_allclose(p, expected, atol=1e-5)
    _, p_generated = model.generate_with_proba(**processor.verdict_inputs(images), max_new_tokens=1, do_sample=False)
    np.testing.assert_allclose(p_generated.numpy(), p, atol=1e-5)
    # The verdict the model writes follows the bias: far enough, every image gets the same verdict.
    for bias, word in ((60.0, 1), (-60.0, 0)):
        model.config.mapper_bias = bias
        sequences, _ = model.generate_with_proba(**processor.verdict_inputs(images), max_new_tokens=1, do_sample=False)
        assert (sequences[:, -1] == model.config.verdict_token_ids[word]).all()
    # Refitting reads the logits without the bias and before the temperature: the same values.
    again = calibrate(model_dir, synth_records, None, write=False)
    assert again["temperature"] == pytest.approx(result["temperature"], rel=1e-4)
    assert again["bias"] == pytest.approx(result["bias"], abs=1e-4)


def test_calibrate_skips_broken_images_and_names_bad_inputs(model_dir, synth_records, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_records.parent, data)
    records = read_records(data / "records.jsonl")
    (data / records[0].image).write_bytes(b"not a png")
    result = calibrate(model_dir, data / "records.jsonl", None, write=False)
    assert result["n"] == 11 and result["failed"][0]["id"] == records[0].id
    assert "not a png" not in result["failed"][0]["error"] and records[0].image.split("/")[-1] in result["failed"][0]["error"]
    reals = data / "reals.jsonl"
    reals.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records[1:] if r.label == "real"))
    with pytest.raises(CalibrationError, match="both real and fake"):
        calibrate(model_dir, reals, None)
    with pytest.raises(CalibrationError, match="no ForenX config.json"):
        calibrate(tmp_path, data / "records.jsonl", None)


def test_cli_calibrate_prints_the_fit_and_dry_run_writes_nothing(model_dir, synth_records):
    before = (model_dir / "config.json").read_text()
    result = CliRunner().invoke(app, ["model", "calibrate", str(model_dir), "--data-file", str(synth_records),
                                      "--split", "", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "mapper_temperature" in result.output and "not written" in result.output and "before" in result.output
    assert (model_dir / "config.json").read_text() == before
    bad = CliRunner().invoke(app, ["model", "calibrate", str(model_dir), "--data-file", str(synth_records),
                                   "--split", "nosuchsplit"])
    assert bad.exit_code == 2 and "calibration needs both real and fake" in " ".join(bad.output.split())


@pytest.fixture(scope="module")
def sharpened_records(tmp_path_factory):
    """8 crops of a shipped photograph at the tiny model's 56 px (no resize): 4 as they are (real), 4
    through an unsharp mask (fake)."""
    from PIL import Image
    from scipy import ndimage

    from forenx.data.synth.photos import default_photos, load_photos

    arrays, _ = load_photos([p for p in default_photos() if p.name == "chelsea"], 256)
    photo = arrays["chelsea"].astype(np.float64)
    out = tmp_path_factory.mktemp("sharpened")
    lines = []
    for i in range(8):
        crop = photo[40 * i:40 * i + 56, 100:156]
        if i % 2:
            crop = np.clip(np.rint(crop + 1.5 * (crop - ndimage.gaussian_filter(crop, (1.5, 1.5, 0)))), 0, 255)
        Image.fromarray(crop.astype(np.uint8)).save(out / f"{i}.png")
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.png", "label": "fake" if i % 2 else "real",
                                 "split": "val"}))
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    return out / "records.jsonl"


def test_calibrate_sharpening_fits_the_traces_weight_that_the_model_then_applies(model_dir, sharpened_records):
    """The trace separates sharpened crops from plain ones where the untrained tiny model cannot: the fit
    gives it a weight, the model adds weight * trace at the verdict slot, and a refit without
    --sharpening keeps the weight and finds the same temperature and bias."""
    from forenx.modeling.sharpening import sharpening_score

    result = calibrate(model_dir, sharpened_records, "val", sharpening=True)
    config = json.loads((model_dir / "config.json").read_text())
    weight = result["sharpening_evidence_weight"]
    assert weight > 1 and config["sharpening_evidence_weight"] == weight
    assert result["after"]["accuracy"] == 1.0 and result["after"]["nll"] < result["before"]["nll"]

    _, images = _images(sharpened_records)
    model, processor = load_checkpoint(model_dir, device="cpu")
    inputs = processor.verdict_inputs(images)
    z = verdict_logit_differences(model, processor, images)  # without the bias and the weighted trace
    trace = sharpening_score(inputs["pixel_values"]).numpy()
    expected = 1 / (1 + np.exp(-(z + result["bias"] + weight * trace) / result["temperature"]))
    np.testing.assert_allclose(model.predict_proba(**inputs).numpy(), expected, atol=1e-5)
    again = calibrate(model_dir, sharpened_records, "val", write=False)
    assert again["sharpening_evidence_weight"] == weight
    assert again["temperature"] == pytest.approx(result["temperature"], rel=1e-3)
    assert again["bias"] == pytest.approx(result["bias"], abs=1e-3)

    shown = CliRunner().invoke(app, ["model", "calibrate", str(model_dir), "--data-file", str(sharpened_records),
                                     "--sharpening", "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "sharpening_evidence_weight" in shown.output and "not written" in shown.output
