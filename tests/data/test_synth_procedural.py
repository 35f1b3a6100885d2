"""ForgerySynth's procedural (dead-leaves) training photographs: seeded, image-like, added after the
photographs' samples without changing them, cropped, paired and manipulated like the photographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from forenx.data.records import Record
from forenx.data.synth import synthesize
from forenx.data.synth.generator import render_procedural
from forenx.data.synth.procedural import dead_leaves, palette_of, procedural_catalogue

PALETTE = np.array([[200, 40, 30], [30, 90, 210], [240, 230, 200], [20, 20, 25], [90, 140, 60]], np.float32)


def _records(root: Path) -> list[Record]:
    with open(root / "records.jsonl", encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f]


def test_dead_leaves_are_seeded_and_look_like_scenes():
    a = dead_leaves(np.random.default_rng([0, 3, 1]), PALETTE, side=160)
    b = dead_leaves(np.random.default_rng([0, 3, 1]), PALETTE, side=160)
    c = dead_leaves(np.random.default_rng([0, 3, 2]), PALETTE, side=160)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (160, 160, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10  # another image, not another noise draw
    # Many regions of many colours, sensor noise everywhere: no two neighbouring pixels all equal.
    assert len(np.unique(a.reshape(-1, 3) // 32, axis=0)) >= 5
    assert (np.diff(a.astype(int), axis=1) != 0).mean() > 0.5
    # Edges with sharp and defocused sides, not only flat fields: the local gradient spans a wide range.
    gradient = np.abs(np.diff(a.mean(-1), axis=1))
    assert np.percentile(gradient, 99) > 8 * np.median(gradient)


def test_render_is_the_same_for_any_number_of_workers_and_the_palette_comes_from_photos():
    photos = procedural_catalogue(2)
    assert [p.name for p in photos] == ["dead_leaves_000", "dead_leaves_001"] and photos[0].group != photos[1].group
    one = render_procedural(photos, PALETTE, seed=5, workers=1)
    two = render_procedural(photos, PALETTE, seed=5, workers=2)
    assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)
    assert not np.array_equal(one["dead_leaves_000"], one["dead_leaves_001"])
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255
    colours = palette_of([image], np.random.default_rng(0), per_photo=10)
    assert colours.shape == (10, 3) and (colours == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="training split's photographs"):
        palette_of([], np.random.default_rng(0))


@pytest.mark.slow
def test_procedural_samples_come_after_the_photographs_and_change_none_of_them(tmp_path):
    """--procedural 24: 24 more train samples from dead-leaves photos, paired like the others; the first n
    samples are byte for byte those of a run without them; the card says what they are."""
    kwargs = dict(n=30, seed=2, size=128, workers=2, variations="train", variation_rate=0.5, paired="train")
    synthesize(tmp_path / "plain", **kwargs)
    summary = synthesize(tmp_path / "proc", procedural=24, procedural_photos=3, **kwargs)
    plain, records = _records(tmp_path / "plain"), _records(tmp_path / "proc")
    assert summary.n == 54 and summary.procedural == 24
    assert sum(summary.counts["train"].values()) == 24 + sum(r.split == "train" for r in plain)
    assert [r.to_dict() for r in records[:30]] == [r.to_dict() for r in plain]
    for r in plain:
        assert (tmp_path / "proc" / r.image).read_bytes() == (tmp_path / "plain" / r.image).read_bytes()
    extra = records[30:]
    assert {r.split for r in extra} == {"train"}
    assert {r.meta["photo"] for r in extra} <= {"dead_leaves_000", "dead_leaves_001", "dead_leaves_002"}
    assert {r.label for r in extra} == {"real", "fake"}
    by_id = {r.id: r for r in records}
    originals = [r for r in extra if "original_of" in r.meta]
    assert len(originals) == 12
    for r in originals:
        fake = by_id[r.meta["original_of"]]
        assert fake.id in {e.id for e in extra} and fake.meta["photo"] == r.meta["photo"]
        original = np.asarray(Image.open(tmp_path / "proc" / r.image)).astype(int)
        forged = np.asarray(Image.open(tmp_path / "proc" / fake.image)).astype(int)
        np.testing.assert_array_equal((original != forged).any(-1), np.asarray(Image.open(tmp_path / "proc" / fake.mask)) > 0)
    donors = {r.meta["params"]["donor_photo"] for r in extra if r.generator == "splicing"}
    assert donors and all(d.startswith("dead_leaves_") for d in donors)
    card = (tmp_path / "proc" / "README.md").read_text()
    assert "24 of the `train` samples are cropped from 3 dead-leaves images" in card
    assert "`dead_leaves_*` (3, train only)" in card
    again = synthesize(tmp_path / "again", procedural=24, procedural_photos=3, **{**kwargs, "workers": 1})
    assert again.n == 54
    assert [r.to_dict() for r in _records(tmp_path / "again")] == [r.to_dict() for r in records]
    assert all((tmp_path / "again" / r.image).read_bytes() == (tmp_path / "proc" / r.image).read_bytes() for r in extra)


def test_procedural_needs_a_train_split_and_the_cli_passes_it_on(tmp_path):
    with pytest.raises(ValueError, match="no train split"):
        synthesize(tmp_path / "x", n=10, seed=0, size=128, workers=1, splits="val=0.5,test=0.5", procedural=4)
    with pytest.raises(ValueError, match="must not be negative"):
        synthesize(tmp_path / "y", n=10, seed=0, size=128, workers=1, procedural=-1)
    from forenx.cli import app

    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "cli"), "--n", "10", "--workers", "1",
                                      "--size", "128", "--procedural", "6", "--procedural-photos", "2"])
    assert result.exit_code == 0, result.output
    records = _records(tmp_path / "cli")
    assert len(records) == 16 and all(r.split == "train" and r.meta["photo"].startswith("dead_leaves_")
                                      for r in records[10:])
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "bad"), "--n", "10", "--workers", "1",
                                      "--size", "128", "--procedural", "6", "--procedural-photos", "0"])
    assert result.exit_code == 2 and "procedural-photos" in result.output
