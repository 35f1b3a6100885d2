"""forenx-nano, the model shipped in forenx/assets/nano: loads by default, answers the shipped examples,
fits in the package, and its card states what it is (and is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forenx.inference.explainer import DEFAULT_MODEL_DIR, Explainer, default_model_path
from forenx.schema import Verdict
from forenx.training.nano import EXAMPLES, MAX_BYTES, folder_bytes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    # No model argument: the default lookup must find the shipped forenx-nano.
    return Explainer.from_pretrained(device="cpu", evidence=False, batch_size=8)


def test_default_model_is_the_shipped_nano():
    assert default_model_path() == DEFAULT_MODEL_DIR
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "forenx"
    assert config["image_size"] == 256  # ForgerySynth crops are seen unresized
    assert (DEFAULT_MODEL_DIR / "model.safetensors").is_file()


def test_shipped_model_fits_the_package_limit():
    size = folder_bytes(DEFAULT_MODEL_DIR)
    assert 1_000_000 < size <= MAX_BYTES, f"forenx/assets/nano is {size} bytes"


def test_model_card_states_scope_and_results():
    card = (DEFAULT_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    assert "NOT a detector for real-world AI-generated" in card
    assert "only ForgerySynth" in card
    assert "verdict accuracy" in card and "SemAP" in card
    assert "model-index" in card  # forenx release wrote the eval results into the metadata


def test_card_says_how_the_verdict_is_made():
    """The stream's logit joins the verdict slot and the calibration fitted on val (temperature, bias and
    the unsharp-mask trace's weight) is in the config and on the card."""
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["forensic_width"] and config["forensic_verdict"] is True
    assert config["mapper_temperature"] != 1.0 and config["mapper_bias"] != 0.0
    assert config["sharpening_evidence_weight"] > 0  # the val fit gave the unsharp-mask trace a weight
    card = (DEFAULT_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    assert "(forensic_verdict)" in card and "post-hoc calibration" in card and "--split val --sharpening" in card
    assert "x unsharp-mask trace) /" in card and "unsharp-mask trace weight" in card


def test_examples_are_the_documented_files():
    readme = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    for name in EXAMPLES:
        path = EXAMPLES_DIR / name
        assert path.is_file() and path.stat().st_size < 300_000, name
        assert name in readme, f"examples/README.md does not describe {name}"


@pytest.mark.slow
def test_shipped_model_explains_every_example(explainer):
    files = [EXAMPLES_DIR / name for name in EXAMPLES]
    reports = explainer(files)
    assert len(reports) == len(files)
    for path, report in zip(files, reports):
        assert report.error is None, f"{path.name}: {report.error}"
        assert report.verdict in (Verdict.REAL, Verdict.FAKE), f"{path.name}: {report.parse_error}: {report.raw_text!r}"
        assert report.prob_fake is not None and 0.0 <= report.prob_fake <= 1.0
        # The verdict word the model wrote is the mapper's argmax: both read the same slot.
        assert (report.prob_fake > 0.5) == (report.verdict is Verdict.FAKE), path.name


@pytest.mark.slow
def test_cli_explain_with_the_default_model():
    from typer.testing import CliRunner

    from forenx.cli import app

    result = CliRunner().invoke(app, ["explain", str(EXAMPLES_DIR / "forged_copy_move.png"), "--no-evidence",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    start = result.output.index("{")
    report = json.loads(result.output[start:result.output.rindex("}") + 1])
    text = json.dumps(report)
    assert '"verdict"' in text and "prob_fake" in text


def test_shipped_model_reads_the_image(explainer):
    """P(fake) depends on the image (the earlier nano gave every image the same ~0.5), and the
    copy-move example, whose duplicated block the forensic stream sees exactly, is called fake."""
    reports = {name: report for name, report in zip(EXAMPLES, explainer([EXAMPLES_DIR / n for n in EXAMPLES]))}
    probs = [r.prob_fake for r in reports.values()]
    assert max(probs) - min(probs) > 0.2, probs
    assert reports["forged_copy_move.png"].verdict is Verdict.FAKE


def test_shipped_model_names_the_family_it_sees(explainer):
    """The anomaly-name head: the copy-move and noise examples are explained under their own
    family's names (the earlier nano wrote one memorised noise quadruple for every forgery), and
    the model knows the ten families' names in its config."""
    from forenx.data.synth.manipulations import FAMILY_NAMES
    from forenx.modeling.names import resolve_name_groups

    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert list(resolve_name_groups(config["forensic_names"])) == list(FAMILY_NAMES)
    names = {name: [a.name for a in report.anomalies]
             for name, report in zip(EXAMPLES, explainer([EXAMPLES_DIR / n for n in EXAMPLES]))}
    assert names["forged_copy_move.png"][0] in FAMILY_NAMES["copy_move"], names
    own = [name for name, (label, family, _) in EXAMPLES.items() if label == "fake" and names[name]
           and names[name][0] in FAMILY_NAMES[family]]
    assert len(own) >= 3, names  # of the 4 forged examples (the release: all but the noise one)
    assert len({n[0] for n in names.values() if n}) >= 2, names  # not one name for everything


#: Words that the phenomena of ForgerySynth's reference texts use for each family (forenx/data/synth/manipulations.py).
PHENOMENON_WORDS = {
    "copy_move": ("pixel for pixel", "copy", "identical", "twice"), "splicing": ("another image", "another photo"),
    "noise_mismatch": ("noise", "grain"), "lighting": ("brightness", "darker", "brighter", "lit "),
    "sharpening": ("unsharp", "sharpen", "halo"), "blur_mismatch": ("blur",), "inpainting": ("fill", "no noise"),
    "resampling": ("upscaled", "rescaled", "enlarged"), "double_jpeg": ("jpeg",), "clone_stamp": ("stamp", "tiles"),
}


def test_shipped_models_phenomenon_follows_the_name_it_wrote(explainer):
    """The text after the name describes that family (the release before wrote the same garbled inpainting
    sentence, "has no noise; its colours fade smoothly in", under every name: its language model came from the
    SFT step chosen for the stream, before it had learned to write; nano_text.yaml trains it on)."""
    from forenx.data.synth.manipulations import FAMILY_NAMES

    family_of = {name: family for family, names in FAMILY_NAMES.items() for name in names}
    reports = dict(zip(EXAMPLES, explainer([EXAMPLES_DIR / n for n in EXAMPLES])))
    written = [(name, a) for name, r in reports.items() for a in r.anomalies]
    assert len(written) >= 4, reports  # the four forged examples are called fake and explained
    for name, anomaly in written:
        words = PHENOMENON_WORDS[family_of[anomaly.name]]
        assert any(w in anomaly.phenomenon.lower() for w in words), (name, anomaly.name, anomaly.phenomenon)
    assert len({a.phenomenon for _, a in written}) == len(written)  # not one sentence for everything


@pytest.mark.slow
def test_shipped_model_is_well_above_chance_on_fresh_held_out_photos(tmp_path):
    """A fresh ForgerySynth sample with the release's seed (so the same split by photo: its test
    photos, camera and flower, were never trained on) but n=1000, so other crops than the ones the
    card's table was measured on: the shipped model's verdicts are well above chance there too."""
    from forenx.data.synth import synthesize
    from forenx.training.nano import detection_report

    from forenx.training.nano import SYNTH

    synthesize(tmp_path, n=1000, seed=0, size=256, workers=2, pinned_groups=SYNTH["pinned_groups"])
    metrics, probs = detection_report(DEFAULT_MODEL_DIR, data=tmp_path)
    print(metrics["n"], metrics["accuracy"], metrics["auc"], metrics["per_photo"])
    assert metrics["accuracy"] >= 0.70 and metrics["auc"] >= 0.80, metrics
    # The figures within each test photo cover the split between them.
    assert set(metrics["per_photo"]) == {"camera", "flower"}
    assert sum(v["n"] for v in metrics["per_photo"].values()) == metrics["n"] == len(probs)
    assert all(0.5 < v["auc"] <= 1.0 for v in metrics["per_photo"].values()), metrics["per_photo"]


@pytest.mark.parametrize("config", ["nano_sft.yaml", "nano_text.yaml", "nano_grpo.yaml"])
def test_recipe_configs_make_the_pipelines_data_set(config):
    """Either recipe, run alone on a fresh clone, makes the same ForgerySynth set as ``make nano``, with
    the same held-out photos pinned."""
    from forenx.data.synth.photos import parse_split_groups
    from forenx.training.nano import SYNTH

    settings = yaml.safe_load((ROOT / "recipes" / "configs" / config).read_text(encoding="utf-8"))
    made = {key[len("synth_"):]: value for key, value in settings.items() if key.startswith("synth_")}
    made["pinned_groups"] = made.pop("split_groups")
    assert made == SYNTH
    assert parse_split_groups(SYNTH["pinned_groups"]) == {"val": ["astronaut", "coffee"], "test": ["camera", "flower"]}


def test_card_lists_the_pipelines_steps_in_order(tmp_path, monkeypatch):
    """The card's "How it was made": SFT, then the language model's own SFT with the stream frozen, then GRPO,
    numbered in order; the text step names what stayed frozen."""
    from forenx.training import nano

    for name in ("SFT_DIR", "TEXT_DIR", "GRPO_DIR"):  # no run folders: no checkpoint or calibration to cite
        monkeypatch.setattr(nano, name, tmp_path / getattr(nano, name).name)
    steps = [line for line in nano.card_section("TABLE", {}, nano.GRPO_DIR).splitlines() if line[:1].isdigit()]
    assert [line.split(". ", 1)[0] for line in steps] == [str(k) for k in range(1, 8)]
    order = ["forenx data synth", "nano_sft.yaml", "nano_text.yaml", "nano_grpo.yaml", "forenx model calibrate",
             "evaluation on the test split", "forenx release runs/nano/grpo"]
    assert all(key in line for key, line in zip(order, steps)), steps
    assert "with the forensic stream and the vision towers frozen as the SFT's val AUC chose them" in steps[2]
    released_text = [line for line in nano.card_section("TABLE", {}, nano.TEXT_DIR).splitlines() if "grpo" in line]
    assert released_text == []
    assert "--split val --sharpening`: P(fake)'s temperature, bias, and the weight of the untrained" in steps[4]
    monkeypatch.setattr(nano, "CALIBRATE_SHARPENING", False)
    plain = [line for line in nano.card_section("TABLE", {}, nano.GRPO_DIR).splitlines() if "calibrate" in line]
    assert "--split val`: P(fake)'s temperature and bias fitted on the val photos" in plain[0]


def test_card_names_the_streams_optional_inputs():
    from forenx.training.nano import _stream_extras

    assert _stream_extras({"tiny_overrides": {"forensic_width": 64}}) == ""
    assert _stream_extras({"tiny_overrides": {"forensic_jpeg": True}}) == " with the JPEG quantization maps"
    both = _stream_extras({"tiny_overrides": {"forensic_residual": 16, "forensic_jpeg": True}})
    assert both == " with a learned residual branch of width 16 and the JPEG quantization maps"
    ensemble = _stream_extras({"tiny_overrides": {"forensic_boundary": True, "forensic_members": 3}})
    assert ensemble == " with the fine-detail boundary maps, read by an ensemble of 3 conv nets"
    three = _stream_extras({"tiny_overrides": {"forensic_jpeg": True, "forensic_boundary": True,
                                               "forensic_histogram": True}})
    assert three == " with the JPEG quantization maps, the fine-detail boundary maps and the histogram-comb maps"
    four = _stream_extras({"tiny_overrides": {"forensic_jpeg": True, "forensic_histogram": True,
                                              "forensic_resampling": True}})
    assert four == " with the JPEG quantization maps, the histogram-comb maps and the resampling maps"


def test_nano_table_shows_the_auc_within_each_photo():
    from forenx.training.nano import nano_table

    detection = {"n": 4, "accuracy": 0.75, "auc": 0.8, "ece": 0.1, "per_generator": {},
                 "per_photo": {"camera": {"n": 2, "accuracy": 1.0, "auc": 1.0},
                               "flower": {"n": 2, "accuracy": 0.5, "auc": 0.5}}}
    table = nano_table({"detection": detection})
    assert "| AUC within each photo (camera / flower) | 1.000 / 0.500 |" in table.splitlines()
    assert table.splitlines().index("| AUC of P(fake) | 0.800 |") == 3
    assert "within each photo" not in nano_table({"detection": {**detection, "per_photo": {}}})


def test_wider_check_uses_only_the_four_extra_photographs_and_says_why_when_it_cannot(tmp_path, monkeypatch):
    """The wider held-out check: plain samples of the photos extra's four photographs only (no nano split
    has them), scored by the shipped model and shown in the table; without the extra it is skipped with
    the reason, and the evaluation goes on."""
    from forenx.data.io import read_records
    from forenx.data.synth import photos as photos_module
    from forenx.training import nano

    monkeypatch.setattr(nano, "WIDER_DIR", tmp_path / "wider")
    monkeypatch.setattr(nano, "WIDER", {**nano.WIDER, "n": 40})
    wider = nano.wider_report(DEFAULT_MODEL_DIR)
    records = read_records(tmp_path / "wider" / "records.jsonl")
    assert len(records) == 40 and {r.split for r in records} == {"test"}
    assert {r.meta["photo"] for r in records} == set(nano.WIDER_GROUPS)
    assert not set(nano.WIDER_GROUPS) & set(nano.SYNTH["pinned_groups"].replace("=", "+").replace(",", "+").split("+"))
    assert wider["n"] == 40 and 0.0 <= wider["auc"] <= 1.0 and set(wider["per_photo"]) == set(nano.WIDER_GROUPS)
    row = [line for line in nano.nano_table({"detection": {}, "wider": wider}).splitlines() if "four more" in line]
    assert row == [f"| four more unseen photographs (ascent / grace_hopper / luispedro / nuclear; 40 images): "
                   f"accuracy / AUC | {wider['accuracy']:.3f} / {wider['auc']:.3f} |"]

    def missing(extra=False):
        raise FileNotFoundError("mahotas is not installed (pip install 'forenx[photos]')")

    monkeypatch.setattr(photos_module, "default_photos", missing)
    monkeypatch.setattr(nano, "WIDER_DIR", tmp_path / "none")
    assert nano.wider_report(DEFAULT_MODEL_DIR) == {"skipped": "mahotas is not installed (pip install 'forenx[photos]')"}
    assert "four more" not in nano.nano_table({"detection": {}, "wider": {"skipped": "x"}})


@pytest.mark.slow
def test_seed_step_trains_calibrates_and_reports_the_test_detection(tmp_path, monkeypatch):
    """``python -m forenx.training.nano seed N``, on a small ForgerySynth set and 4 training steps (the
    recipe's own settings otherwise): a trained model, its val calibration and its test figures."""
    from forenx.data.synth import synthesize
    from forenx.training import nano

    synthesize(tmp_path / "data", n=160, seed=0, size=256, workers=2, variations="train", variation_rate=0.5,
               paired="train", pinned_groups=nano.SYNTH["pinned_groups"])
    monkeypatch.setattr(nano, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(nano, "SEEDS_DIR", tmp_path / "runs")
    with pytest.raises(SystemExit, match="usage"):
        nano.main(["seed"])
    nano.main(["seed", "3", "--train_file", str(tmp_path / "data" / "records.jsonl"), "--max_steps", "4",
               "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
               "--per_device_train_batch_size", "4", "--logging_steps", "2"])
    out = tmp_path / "runs" / "seed-3"
    assert (out / "model.safetensors").is_file() and (out / "calibration.json").is_file()
    run = yaml.safe_load((out / "forenx_run.yaml").read_text())
    assert run["model"]["tiny_seed"] == 3 and run["training"]["seed"] == 3 and run["data"]["synth_seed"] == 0
    report = json.loads((out / "detection.json").read_text())
    assert report["seed"] == 3 and report["overrides"][:2] == ["--train_file", str(tmp_path / "data" / "records.jsonl")]
    detection = report["detection"]
    assert detection["n"] == len(report["prob_fake"]) > 0 and 0.0 <= detection["auc"] <= 1.0
    assert set(detection["per_photo"]) == {"camera", "flower"}
