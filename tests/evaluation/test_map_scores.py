"""eval/map_scores.py: each fixed forensic map as an untrained detector, AUC per manipulation."""

from __future__ import annotations

import json

import pytest
import torch

from forenx.data.synth import synthesize
from forenx.modeling.forensic import MAP_NAMES
from tests.scripts import load_script


def _tool():
    return load_script("eval/map_scores.py")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("maps") / "fs"
    synthesize(out, n=80, seed=2, workers=1, size=128)
    return out


def test_image_scores_take_the_top_blocks_each_way():
    maps = torch.zeros(1, len(MAP_NAMES), 4, 4)
    maps[0, 0, 0, :2] = torch.tensor([4.0, 2.0])
    maps[0, 1, 1, :3] = torch.tensor([-3.0, -1.0, -2.0])
    scores = _tool().image_scores(maps, top=2)
    assert len(scores) == 2 * len(MAP_NAMES)
    assert scores[f"{MAP_NAMES[0]} high"].item() == 3.0 and scores[f"{MAP_NAMES[0]} low"].item() == 0.0
    assert scores[f"{MAP_NAMES[1]} low"].item() == 2.5 and scores[f"{MAP_NAMES[1]} high"].item() == 0.0


def test_every_map_is_scored_per_family_and_the_exact_ones_find_their_forgeries(synth, tmp_path, capsys):
    """On a small ForgerySynth set, untrained: the duplicate-window map finds copy-moves, the JPEG
    zeroed-AC map on shifted grids finds double JPEG and the histogram comb finds lighting changes;
    every figure is an AUC, in the JSON too."""
    out = tmp_path / "scores.json"
    result = _tool().main(["--data", str(synth), "--splits", "train", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    figures = result["splits"]["train"]
    assert set(figures) == {f"{name} {way}" for name in MAP_NAMES for way in ("high", "low")}
    assert all(f["auc"] is None or 0.0 <= f["auc"] <= 1.0 for f in figures.values())
    assert figures["duplicate windows (std > 0.5) high"]["families"]["copy_move"] > 0.95
    assert figures["JPEG zeroed AC, shifted grid high"]["families"]["double_jpeg"] > 0.95
    assert figures["histogram comb high"]["families"]["lighting"] > 0.95  # measured 0.99
    assert "copy_move" in capsys.readouterr().out


def test_the_interpolation_fit_finds_enlarged_regions(tmp_path):
    """At 256 px (a region of 20 - 40% of the image holds several of its 32 px windows; at 128 px most do
    not), the resampling-fit map alone separates ForgerySynth's resampled regions from the reals."""
    data = tmp_path / "fs"
    synthesize(data, n=40, seed=0, workers=1, size=256, families=["resampling"], splits="test=1")
    result = _tool().main(["--data", str(data), "--splits", "test", "--maps", "resampling fit"])
    assert set(result["splits"]["test"]) == {"resampling fit high", "resampling fit low"}
    assert result["splits"]["test"]["resampling fit high"]["families"]["resampling"] > 0.9


def test_bad_arguments_name_what_is_wrong(synth, capsys):
    with pytest.raises(SystemExit):
        _tool().main(["--data", str(synth), "--maps", "no such map"])
    assert "unknown map(s) ['no such map']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _tool().main(["--data", str(synth), "--top", "0"])
    assert "--top must be at least 1" in capsys.readouterr().err
