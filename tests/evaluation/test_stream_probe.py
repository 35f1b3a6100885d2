"""eval/stream_probe.py: the forensic stream trained alone on a ForgerySynth folder, scored per family and photo."""

from __future__ import annotations

import json

import pytest
import torch

from forenx.data.synth import synthesize
from forenx.modeling.forensic import BOUNDARY_CHANNELS, HISTOGRAM_CHANNELS, JPEG_CHANNELS, RESAMPLING_CHANNELS
from tests.scripts import load_script


def _probe():
    return load_script("eval/stream_probe.py")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "fs"
    synthesize(out, n=60, seed=1, workers=1, size=64, variations="train", variation_rate=0.5, paired="train")
    return out


def test_probe_learns_the_training_split_and_reports_every_figure(synth, tmp_path):
    """Scored on the split it trains on, the stream (the model's ForensicEncoder with the SFT's losses)
    separates it; every seed reports its best step, the summary is the mean over seeds, and the JSON
    holds it all."""
    probe = _probe()
    out = tmp_path / "probe.json"
    result = probe.main(["--data", str(synth), "--seeds", "0", "1", "--steps", "80", "--batch", "8",
                         "--eval-every", "40", "--eval-splits", "train", "val", "--select", "train",
                         "--lr", "3e-3", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["summary"] == result["summary"] and written["ensemble"] == result["ensemble"]
    runs = result["runs"]
    assert [r["step"] in (40, 80) for r in runs] == [True, True]
    assert all(r["train"]["auc"] > 0.85 for r in runs), [r["train"]["auc"] for r in runs]
    mean = result["summary"]["train"]["auc"]["mean"]
    assert mean == pytest.approx(sum(r["train"]["auc"] for r in runs) / 2, abs=1e-4)
    for run in runs:
        for split in ("train", "val"):
            figures = [run[split]["auc"], *run[split]["families"].values(), *run[split]["photos"].values()]
            assert all(f is None or 0.0 <= f <= 1.0 for f in figures)
        assert set(run["val"]["families"]) <= set(probe.FAMILIES) and run["val"]["photos"]
        assert "logits" not in run["train"]
    # The two seeds' streams as one ensemble (mean logit), scored like each seed.
    assert result["ensemble"]["train"]["auc"] > 0.85 and set(result["ensemble"]["val"]) == {"auc", "families", "photos"}


def test_dihedral_views_are_the_eight_symmetries_and_score_as_their_mean_logit(synth):
    probe = _probe()
    image = torch.arange(16.0).view(1, 4, 4)
    views = [probe.dihedral(image, v) for v in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(probe.dihedral(image, 4), image.flip(-1)) and torch.equal(probe.dihedral(image, 2), image.flip(-1).flip(-2))
    split = probe.load_split(synth, "val", views=3)
    assert len(split["view_maps"]) == 2 and split["view_maps"][0].shape == split["maps"].shape
    torch.manual_seed(0)
    encoder = probe.ForensicEncoder(8, out_dim=8, grid=2, image_size=64, groups=len(probe.FAMILIES))
    scored = probe.score(encoder, split)["logits"]
    each = [encoder.eval().forward_maps(maps, probe.dihedral(split["pixels"], v).float() / 255)[1]
            for v, maps in enumerate([split["maps"], *split["view_maps"]])]
    assert torch.allclose(scored, torch.stack(each).mean(0), atol=1e-5)
    assert not torch.allclose(each[0], each[1])  # the views are different inputs


def test_probe_refuses_a_selection_split_it_does_not_score(synth):
    with pytest.raises(SystemExit):
        _probe().main(["--data", str(synth), "--eval-splits", "test", "--select", "val"])
    with pytest.raises(SystemExit, match="no records in split 'nope'"):
        _probe().main(["--data", str(synth), "--seeds", "0", "--steps", "1", "--eval-splits", "nope",
                       "--select", "nope"])


def test_probe_with_the_residual_branch_the_jpeg_maps_the_mask_loss_and_separate_eval_data(synth, tmp_path):
    """--residual, --jpeg, --boundary, --histogram, --resampling and --mask-weight train the learned branch, the
    JPEG, boundary, histogram and resampling maps' channels and the localisation head with the rest;
    --eval-data scores another folder's splits (one training set against another on the same images)."""
    other = tmp_path / "other"
    synthesize(other, n=30, seed=2, workers=1, size=64)
    probe = _probe()
    train = probe.load_split(synth, "train")
    fakes = train["fake"] == 1
    assert train["masks"].shape == (len(fakes), 8, 8) and train["pixels"].dtype == torch.uint8
    assert train["masks"][~fakes].sum() == 0 and (train["masks"][fakes].flatten(1).amax(1) > 0).all()
    assert probe.load_split(synth, "train", jpeg=True)["maps"].shape[1] == train["maps"].shape[1] + JPEG_CHANNELS
    both = probe.load_split(synth, "train", jpeg=True, boundary=True)["maps"]
    assert both.shape[1] == train["maps"].shape[1] + JPEG_CHANNELS + BOUNDARY_CHANNELS
    combs = probe.load_split(synth, "train", histogram=True)["maps"]
    assert combs.shape[1] == train["maps"].shape[1] + HISTOGRAM_CHANNELS
    fits = probe.load_split(synth, "train", resampling=True)["maps"]
    assert fits.shape[1] == train["maps"].shape[1] + RESAMPLING_CHANNELS
    result = probe.main(["--data", str(synth), "--eval-data", str(other), "--seeds", "0", "--steps", "4",
                         "--batch", "8", "--eval-every", "2", "--residual", "4", "--jpeg", "--boundary",
                         "--histogram", "--resampling", "--mask-weight", "1",
                         "--eval-splits", "test", "--select", "test"])
    assert result["config"]["residual"] == 4 and result["config"]["mask_weight"] == 1.0 and result["config"]["jpeg"]
    assert result["config"]["boundary"] and result["config"]["histogram"] and result["config"]["resampling"]
    assert set(result["runs"][0]["test"]["photos"]) == set(probe.load_split(other, "test")["photo"])


def test_probe_trains_an_ensemble_of_streams_like_the_model(synth):
    """--members 2: one encoder holding two streams, each trained by its own losses on the same batches;
    the ensemble learns the split it trains on, as one stream does."""
    result = _probe().main(["--data", str(synth), "--seeds", "0", "--steps", "80", "--batch", "8", "--members", "2",
                            "--eval-every", "40", "--eval-splits", "train", "--select", "train", "--lr", "3e-3"])
    assert result["config"]["members"] == 2
    assert result["runs"][0]["train"]["auc"] > 0.85, result["runs"][0]["train"]["auc"]
