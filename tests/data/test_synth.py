"""ForgerySynth: exact masks, quadruples that match their parameters, determinism, splits by photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from forenx.data.records import Record
from forenx.data.synth import FAMILIES, manipulation, severity_from_strength, synthesize
from forenx.data.synth.capture import capture_variation
from forenx.data.synth.cli import synth_command
from forenx.data.synth.manipulations import mask_box, where
from forenx.data.synth import photos as photos_module
from forenx.data.synth.photos import (
    Photo,
    default_photos,
    load_photos,
    parse_split_groups,
    parse_splits,
    split_groups,
)
from forenx.images import ImageLoadError
from forenx.data.validate import validate_records


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    """A textured and a smoother 256 px crop of two shipped photos (image, donor)."""
    arrays, _ = load_photos([p for p in default_photos() if p.name in ("astronaut", "coffee")], 256)
    return (np.ascontiguousarray(arrays["astronaut"][128:384, 128:384]),
            np.ascontiguousarray(arrays["coffee"][100:356, 60:316]))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(root: Path) -> list[Record]:
    with open(root / "records.jsonl", encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f]


# ------------------------------------------------------------------------------ manipulation families


def test_there_are_at_least_eight_families():
    assert len(FAMILIES) >= 8
    assert {"copy_move", "splicing", "inpainting", "resampling", "noise_mismatch", "double_jpeg",
            "lighting", "blur_mismatch", "clone_stamp"} <= set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_exactly_the_changed_pixels(crops, family, seed):
    image, donor = crops
    before = image.copy()
    result = manipulation(family)(image, np.random.default_rng(seed), donor=donor)
    assert np.array_equal(image, before), "the input image must not be modified"
    assert result.forged.shape == image.shape and result.forged.dtype == np.uint8
    assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) <= {0, 255}
    changed = (result.forged != image).any(axis=-1)
    assert np.array_equal(result.mask == 255, changed)
    assert changed.any()
    # Nothing changes outside the region(s) the family says it worked on.
    outside = np.ones(changed.shape, bool)
    for x0, y0, x1, y1 in result.params.get("stamp_boxes") or [result.params["region_box"]]:
        outside[y0:y1, x0:x1] = False
    assert not changed[outside].any()
    assert result.params["changed_box"] == mask_box(result.mask)
    for q in result.quadruples:
        assert q.box == [float(v) for v in mask_box(result.mask)]
        assert q.source == "synth"
        assert q.severity == severity_from_strength(result.params["strength"])
        assert where(mask_box(result.mask), 256, 256) in q.phenomenon
        assert q.name and q.reasoning
    assert result.params["family"] == family
    assert result.summary.endswith(".")


def test_same_rng_same_manipulation(crops):
    image, donor = crops
    for family, apply in FAMILIES.items():
        a = apply(image, np.random.default_rng(5), donor=donor)
        b = apply(image, np.random.default_rng(5), donor=donor)
        assert np.array_equal(a.forged, b.forged) and a.params == b.params, family
        assert [q.to_dict() for q in a.quadruples] == [q.to_dict() for q in b.quadruples], family


def test_noise_quadruple_states_its_sigma(crops):
    image, _ = crops
    result = manipulation("noise_mismatch")(image, np.random.default_rng(3))
    sigma = result.params["noise_sigma"]
    assert 4.0 <= sigma <= 20.0
    assert f"{sigma:.1f}" in result.quadruples[0].phenomenon
    assert result.quadruples[0].severity == severity_from_strength((sigma - 3.0) / 15.0)
    # The residual inside the region really has about that standard deviation (clipping aside).
    region = result.mask == 255
    residual = result.forged[region].astype(float) - image[region].astype(float)
    assert abs(residual.std() - sigma) < 0.25 * sigma


def test_double_jpeg_quadruple_states_qualities_and_shift(crops):
    image, _ = crops
    result = manipulation("double_jpeg")(image, np.random.default_rng(4))
    p = result.params
    text = result.quadruples[0].phenomenon
    assert str(p["jpeg_quality_first"]) in text and str(p["jpeg_quality_second"]) in text
    dx, dy = p["grid_shift"]
    assert (dx, dy) != (0, 0) and f"{dx}" in text and f"{dy}" in text
    assert abs(p["jpeg_quality_first"] - p["jpeg_quality_second"]) >= 10
    # The whole recompressed rectangle changes (up to the odd pixel JPEG reproduces exactly).
    x0, y0, x1, y1 = p["region_box"]
    assert (result.mask[y0:y1, x0:x1] == 255).mean() > 0.9
    assert result.quadruples[0].severity == severity_from_strength(
        (100 - min(p["jpeg_quality_first"], p["jpeg_quality_second"])) / 50)


def test_copy_move_target_equals_source(crops):
    image, _ = crops
    result = manipulation("copy_move")(image, np.random.default_rng(6))
    sx0, sy0, sx1, sy1 = result.params["source_box"]
    tx0, ty0, tx1, ty1 = result.params["region_box"]
    assert np.array_equal(result.forged[ty0:ty1, tx0:tx1], image[sy0:sy1, sx0:sx1])
    assert str(result.params["source_box"]) in result.quadruples[0].phenomenon


def test_lighting_and_resampling_and_blur_state_their_parameters(crops):
    image, _ = crops
    lit = manipulation("lighting")(image, np.random.default_rng(7))
    gains = lit.params["channel_gains"]
    assert f"R x{gains[0]:.2f}, G x{gains[1]:.2f}, B x{gains[2]:.2f}" in lit.quadruples[0].phenomenon
    assert ("brighter" if lit.params["gain"] > 1 else "darker") in lit.quadruples[0].phenomenon
    resampled = manipulation("resampling")(image, np.random.default_rng(8))
    assert f"{resampled.params['scale_factor']:.2f}" in resampled.quadruples[0].phenomenon
    blurred = manipulation("blur_mismatch")(image, np.random.default_rng(9))
    assert f"sigma {blurred.params['blur_sigma']:.1f}" in blurred.quadruples[0].phenomenon


def test_clone_stamps_are_copies_of_the_source(crops):
    image, _ = crops
    result = manipulation("clone_stamp")(image, np.random.default_rng(10))
    sx0, sy0, sx1, sy1 = result.params["source_box"]
    for x0, y0, x1, y1 in result.params["stamp_boxes"]:
        assert np.array_equal(result.forged[y0:y1, x0:x1], image[sy0:sy1, sx0:sx1])
    assert f"{result.params['count']} " in result.quadruples[0].phenomenon


def test_splicing_needs_a_donor(crops):
    image, _ = crops
    with pytest.raises(ValueError, match="donor"):
        manipulation("splicing")(image, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown manipulation family"):
        manipulation("warp")


# ------------------------------------------------------------------------------------ the data set


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synthesize(tmp_path / "a", n=30, seed=11, workers=1)
    synthesize(tmp_path / "b", n=30, seed=11, workers=1)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys()
    assert {"records.jsonl", "README.md"} <= files_a.keys()
    assert all(files_a[k] == files_b[k] for k in files_a)
    synthesize(tmp_path / "c", n=30, seed=12, workers=1)
    assert _files(tmp_path / "c")["records.jsonl"] != files_a["records.jsonl"]
    assert sum(sum(row.values()) for row in a.counts.values()) == 30


@pytest.mark.slow
def test_output_does_not_depend_on_worker_count(tmp_path):
    synthesize(tmp_path / "one", n=40, seed=3, workers=1)
    synthesize(tmp_path / "two", n=40, seed=3, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_records_parse_and_every_path_exists(tmp_path):
    summary = synthesize(tmp_path, n=40, seed=5, workers=1, real_fraction=0.25)
    records = _records(tmp_path)
    assert len(records) == 40 and len({r.id for r in records}) == 40
    for r in records:
        assert r.source == "forgerysynth" and r.split in ("train", "val", "test")
        assert (tmp_path / r.image).is_file() and r.image.startswith(f"images/{r.split}/")
        with Image.open(tmp_path / r.image) as im:
            assert im.format == "PNG" and im.size == (256, 256)
        if r.label == "real":
            assert r.generator == "camera" and not r.quadruples and r.mask is None
            continue
        assert r.label == "fake" and r.generator in FAMILIES and r.quadruples and r.summary
        assert r.mask and (tmp_path / r.mask).is_file()
        assert r.meta["params"]["family"] == r.generator
        mask = np.asarray(Image.open(tmp_path / r.mask))
        assert r.boxes == [q.box for q in r.quadruples] == [[float(v) for v in mask_box(mask)]]
        assert r.answer().startswith('{"verdict": "fake"')
    assert sum(r.label == "real" for r in records) == sum(
        row.get("real", 0) for row in summary.counts.values())
    report = validate_records(tmp_path / "records.jsonl")
    assert report.ok and report.n_valid == 40, report.problems
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "copy_move" in card and "CC0" in card and "| train |" in card


def test_fake_pixels_differ_from_the_source_crop_exactly_on_the_mask(tmp_path):
    synthesize(tmp_path, n=24, seed=8, workers=1, real_fraction=0.0)
    arrays, _ = load_photos(default_photos(), 256)
    for r in _records(tmp_path):
        x0, y0, x1, y1 = r.meta["crop_box"]
        original = arrays[r.meta["photo"]][y0:y1, x0:x1]
        forged = np.asarray(Image.open(tmp_path / r.image).convert("RGB"))
        mask = np.asarray(Image.open(tmp_path / r.mask))
        assert np.array_equal(mask == 255, (forged != original).any(-1)), r.id


def test_splits_are_disjoint_by_photo(tmp_path):
    summary = synthesize(tmp_path, n=120, seed=2, workers=1)
    photos = {p.name: p.group for p in default_photos()}
    groups_by_split: dict[str, set[str]] = {}
    for r in _records(tmp_path):
        used = {r.meta["photo"], r.meta.get("params", {}).get("donor_photo")} - {None}
        groups_by_split.setdefault(r.split, set()).update(photos[p] for p in used)
    assert set(groups_by_split) == {"train", "val", "test"}
    splits = list(groups_by_split.values())
    for i in range(len(splits)):
        for j in range(i + 1, len(splits)):
            assert not splits[i] & splits[j]
    # The stereo pair is one scene: both halves sit in one split.
    motorcycle = [s for s, names in summary.split_photos.items() if "motorcycle_left" in names]
    assert motorcycle and "motorcycle_right" in summary.split_photos[motorcycle[0]]


def test_split_groups_and_parse_splits():
    groups = [f"g{i}" for i in range(10)]
    assignment = split_groups(groups, parse_splits("train=0.8,val=0.1,test=0.1"), seed=1)
    assert sorted(g for names in assignment.values() for g in names) == sorted(groups)
    assert all(len(v) >= 2 for v in assignment.values())
    assert assignment == split_groups(groups, parse_splits("train=0.8,val=0.1,test=0.1"), seed=1)
    for bad, match in (("train:0.8", "NAME=FRACTION"), ("=0.8", "NAME=FRACTION"), ("train=x", "NAME=FRACTION"),
                       ("train=-1,test=2", "NAME=FRACTION"), ("train=0.5,train=0.5", "'train' is given twice"),
                       ("train=0,test=0", "sum to more than 0"), ("", "sum to more than 0")):
        with pytest.raises(ValueError, match=match):
            parse_splits(bad)
    assert parse_splits("train=1, ,test=1") == {"train": 0.5, "test": 0.5}
    with pytest.raises(ValueError, match="cannot fill"):
        split_groups(["a"], {"train": 0.5, "test": 0.5}, seed=0)


def test_pinned_groups_keep_their_split_and_the_rest_are_shared_out():
    groups = [f"g{i}" for i in range(12)]
    fractions = parse_splits("train=0.8,val=0.1,test=0.1")
    pinned = parse_split_groups("test=g3+g7, val=g0")
    assignment = split_groups(groups, fractions, seed=1, pinned=pinned)
    assert assignment["test"] == ["g3", "g7"] and assignment["val"] == ["g0"]
    assert sorted(assignment["train"]) == sorted(set(groups) - {"g0", "g3", "g7"})
    # Adding groups never moves a pinned one, whatever the seed.
    more = split_groups(groups + ["h1", "h2", "h3"], fractions, seed=5, pinned=pinned)
    assert more["test"] == ["g3", "g7"] and {"h1", "h2", "h3"} <= set(more["train"])
    # Only the free groups are shared: two unpinned splits both get some.
    shared = split_groups(groups, fractions, seed=1, pinned={"test": ["g1"]})
    assert shared["test"] == ["g1"] and len(shared["val"]) >= 1 and len(shared["train"]) >= 1


@pytest.mark.parametrize("text, pinned, match", [
    ("test=camera", None, None),
    ("test=nosuch", None, "no photo group 'nosuch'"),
    ("holdout=g1", None, "'holdout', which is not one of the splits"),
    ("test:g1", None, "SPLIT=GROUP"),
    ("test=g1,val=g1", None, "pinned to both 'test' and 'val'"),
    ("test=g1,test=g2", None, "given twice"),
    ("test=+", None, "SPLIT=GROUP"),
    (None, {"train": ["g0"], "val": ["g1"], "test": ["g2"]}, "would be in none"),
])
def test_bad_pins_are_refused_by_name(text, pinned, match):
    groups = ["g0", "g1", "g2", "g3", "camera"]
    if match is None:
        assert split_groups(groups, parse_splits("train=0.8,val=0.1,test=0.1"), 0, parse_split_groups(text))["test"] \
            == ["camera"]
        return
    with pytest.raises(ValueError, match=match):
        split_groups(groups, parse_splits("train=0.8,val=0.1,test=0.1"), 0, pinned or parse_split_groups(text))


def test_synth_with_pinned_test_photos(tmp_path):
    summary = synthesize(tmp_path, n=60, seed=3, workers=1, size=128,
                         pinned_groups="val=astronaut+coffee,test=camera+flower")
    assert summary.split_photos["val"] == ["astronaut", "coffee"]
    assert summary.split_photos["test"] == ["camera", "flower"]
    assert {r.meta["photo"] for r in _records(tmp_path) if r.split == "test"} == {"camera", "flower"}
    card = (tmp_path / "README.md").read_text()
    assert "Pinned photo groups (`--split-groups`): val: astronaut, coffee; test: camera, flower." in card


def test_extra_photos_come_only_when_asked_for(tmp_path, monkeypatch):
    # The photos extra is part of the test environment (make setup installs forenx[all]), yet the
    # default set stays the 17 photos of scikit-image and scikit-learn.
    assert {p.name for p in default_photos()} == {Path(f).stem for _, f, _, _ in photos_module.DEFAULT_PHOTOS}
    extra = {p.name: p for p in default_photos(extra=True)}
    assert {"grace_hopper", "ascent", "luispedro", "nuclear"} <= set(extra) and len(extra) == 21
    arrays, skipped = load_photos([extra["ascent"], extra["grace_hopper"]], 256)
    assert not skipped and arrays["ascent"].shape == (512, 512, 3) and arrays["ascent"].dtype == np.uint8
    assert np.array_equal(arrays["ascent"][..., 0], arrays["ascent"][..., 2])  # a grey photo, as RGB
    summary = synthesize(tmp_path / "x", n=40, seed=0, workers=1, size=128, extra_photos=True,
                         pinned_groups="val=astronaut+coffee,test=camera+flower")
    used = {name for names in summary.split_photos.values() for name in names}
    assert {"grace_hopper", "ascent", "luispedro", "nuclear"} <= set(summary.split_photos["train"]) and len(used) == 21
    assert "| `grace_hopper` | grace_hopper | public domain (U.S. Navy) |" in (tmp_path / "x" / "README.md").read_text()
    with pytest.raises(ValueError, match="--extra-photos adds to the default photographs"):
        synthesize(tmp_path / "y", n=4, seed=0, photos=tmp_path, extra_photos=True)

    real_package_dir = photos_module._package_dir
    monkeypatch.setattr(photos_module, "_package_dir",
                        lambda package: None if package == "matplotlib" else real_package_dir(package))
    assert len(default_photos()) == 17  # not needed without --extra-photos
    with pytest.raises(FileNotFoundError, match=r"matplotlib is not installed \(pip install 'forenx\[photos\]'\)"):
        default_photos(extra=True)
    monkeypatch.setattr(photos_module, "_package_dir",
                        lambda package: None if package == "sklearn" else real_package_dir(package))
    with pytest.raises(FileNotFoundError, match="sklearn is not installed; it ships the photo china.jpg"):
        default_photos()


def test_broken_npz_photo_is_skipped_with_the_reason(tmp_path):
    np.savez(tmp_path / "floats.npz", data=np.zeros((300, 300), dtype=np.float32))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "grey.npz", data=np.full((300, 300), 7, dtype=np.uint8))
    catalogue = [Photo(n, str(tmp_path / f"{n}.npz"), n, "test") for n in ("floats", "junk", "grey")]
    arrays, skipped = load_photos(catalogue, 256)
    assert list(arrays) == ["grey"] and arrays["grey"].shape == (300, 300, 3)
    assert "floats.npz: 'data' is a float32 array" in skipped[0]
    assert "junk.npz: not a NumPy archive" in skipped[1]
    with pytest.raises(ImageLoadError, match="not a NumPy archive"):
        photos_module._read_npz(str(tmp_path / "missing.npz"))


def test_user_photo_folder(tmp_path):
    arrays, _ = load_photos(default_photos(), 256)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(arrays[name]).save(folder / f"{name}.png")
    Image.fromarray(arrays["coffee"][:100, :100]).save(folder / "tiny.png")
    summary = synthesize(tmp_path / "out", n=12, seed=0, photos=folder, size=128, workers=1,
                         splits="train=0.7,test=0.3")
    assert any("tiny.png" in reason and "smaller" in reason for reason in summary.skipped_photos)
    records = _records(tmp_path / "out")
    assert {r.meta["photo"] for r in records} <= {"chelsea.png", "coffee.png", "rocket.png"}
    with pytest.raises(FileExistsError, match="--overwrite"):
        synthesize(tmp_path / "out", n=12, seed=0, photos=folder, size=128, workers=1)


def test_cli_synth(tmp_path):
    app = typer.Typer()
    app.command("synth")(synth_command)

    @app.callback()
    def _group() -> None:
        """Keep `synth` a subcommand, as on `forenx data`."""

    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "ds"), "--n", "10", "--seed", "4",
                                 "--workers", "1", "--size", "128"])
    assert result.exit_code == 0, result.output
    assert len(_records(tmp_path / "ds")) == 10 and "samples/s" in result.output
    bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "ds"), "--n", "10"])
    assert bad.exit_code == 2 and "--overwrite" in bad.output
    varied = runner.invoke(app, ["synth", "--out", str(tmp_path / "v"), "--n", "10", "--workers", "1",
                                 "--size", "128", "--variations", "train"])
    assert varied.exit_code == 0, varied.output
    assert all(("capture" in r.meta) == (r.split == "train") for r in _records(tmp_path / "v"))
    typo = runner.invoke(app, ["synth", "--out", str(tmp_path / "t"), "--n", "10", "--variations", "tran"])
    assert typo.exit_code == 2 and "unknown split" in typo.output
    pinned = runner.invoke(app, ["synth", "--out", str(tmp_path / "p"), "--n", "10", "--workers", "1",
                                 "--size", "128", "--split-groups", "test=camera+flower"])
    assert pinned.exit_code == 0, pinned.output
    assert {r.meta["photo"] for r in _records(tmp_path / "p") if r.split == "test"} <= {"camera", "flower"}
    unknown = runner.invoke(app, ["synth", "--out", str(tmp_path / "u"), "--n", "10", "--split-groups", "test=kamera"])
    assert unknown.exit_code == 2 and "no photo group 'kamera'" in unknown.output
    bracketed = runner.invoke(app, ["synth", "--out", str(tmp_path / "b"), "--n", "10", "--split-groups", "test=[camera]"])
    assert bracketed.exit_code == 2 and "no photo group '[camera]'" in bracketed.output  # not taken for markup
    extra = runner.invoke(app, ["synth", "--out", str(tmp_path / "e"), "--n", "10", "--workers", "1", "--size", "128",
                                "--extra-photos", "--split-groups", "test=grace_hopper"])
    assert extra.exit_code == 0, extra.output
    assert {r.meta["photo"] for r in _records(tmp_path / "e") if r.split == "test"} == {"grace_hopper"}


# ------------------------------------------------------------------------------ capture variations

def test_capture_variation_is_seeded_and_keeps_size_and_type():
    photo = np.asarray(Image.open(default_photos()[0].path).convert("RGB"))
    a = capture_variation(np.random.default_rng(3), photo, 128)
    b = capture_variation(np.random.default_rng(3), photo, 128)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    crops = [capture_variation(np.random.default_rng(s), photo, 128) for s in range(40)]
    assert all(c.shape == (128, 128, 3) and c.dtype == np.uint8 for c, _, _ in crops)
    # Over 40 draws every kind of change happens at least once, and some crops are downscaled views.
    seen = set().union(*(p for _, _, p in crops))
    assert {"gamma", "greyscale", "blur_sigma", "noise_sigma", "jpeg_quality", "downscale_filter"} <= seen
    for crop, box, params in crops:
        x0, y0, x1, y1 = box
        assert x0 % 8 == 0 and y0 % 8 == 0 and x1 - x0 == y1 - y0 >= 128
        assert params["scale"] == round(128 / (x1 - x0), 4)
        if params.get("greyscale") and "noise_sigma" not in params:
            assert np.array_equal(crop[..., 0], crop[..., 1])


def test_variations_change_only_the_named_splits(tmp_path):
    """Variations in train leave val / test byte-identical to a plain run; train crops (and splice
    donors) record their variation, and the card says which splits vary."""
    synthesize(tmp_path / "plain", n=40, seed=6, workers=1)
    summary = synthesize(tmp_path / "varied", n=40, seed=6, workers=1, variations="train")
    assert summary.variation_splits == ["train"]
    plain, varied = _files(tmp_path / "plain"), _files(tmp_path / "varied")
    assert plain.keys() == varied.keys()
    for name in plain:
        if "/train/" in name:
            continue
        if name.startswith(("images/", "masks/")):
            assert plain[name] == varied[name], name
    records = _records(tmp_path / "varied")
    assert all(("capture" in r.meta) == (r.split == "train") for r in records)
    changed = [r for r in records if r.split == "train" and plain[r.image] != varied[r.image]]
    assert len(changed) >= len([r for r in records if r.split == "train"]) // 2
    donors = [r for r in records if r.split == "train" and r.generator == "splicing"]
    assert donors and all("donor_capture" in r.meta["params"] for r in donors)
    assert "Capture variations in split(s) `train`" in (tmp_path / "varied" / "README.md").read_text()
    assert validate_records(tmp_path / "varied" / "records.jsonl").ok
    with pytest.raises(ValueError, match="unknown split"):
        synthesize(tmp_path / "bad", n=10, seed=6, workers=1, variations="training")


def test_variation_rate_varies_a_share_and_leaves_the_rest_plain(tmp_path):
    """--variation-rate 0.5: about half the train samples are varied (seeded per sample); the others,
    and every other split, are byte-identical to a plain run; rate 1 is the plain --variations run."""
    synthesize(tmp_path / "plain", n=40, seed=6, workers=1)
    summary = synthesize(tmp_path / "half", n=40, seed=6, workers=2, variations="train", variation_rate=0.5)
    assert summary.variation_rate == 0.5
    plain, half = _files(tmp_path / "plain"), _files(tmp_path / "half")
    records = _records(tmp_path / "half")
    train = [r for r in records if r.split == "train"]
    varied = [r for r in train if "capture" in r.meta]
    assert 0.25 * len(train) <= len(varied) <= 0.75 * len(train)
    for r in records:
        if "capture" not in r.meta:
            assert plain[r.image] == half[r.image], r.id
    assert "a random 50% of the crops there" in (tmp_path / "half" / "README.md").read_text()
    full = synthesize(tmp_path / "full", n=40, seed=6, workers=1, variations="train", variation_rate=1.0)
    synthesize(tmp_path / "again", n=40, seed=6, workers=1, variations="train")
    assert _files(tmp_path / "full") == _files(tmp_path / "again") and full.variation_rate == 1.0
    with pytest.raises(ValueError, match="variation-rate"):
        synthesize(tmp_path / "bad", n=10, seed=6, workers=1, variations="train", variation_rate=0.0)
    from forenx.cli import app

    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "cli"), "--n", "10", "--workers", "1",
                                      "--size", "128", "--variations", "train", "--variation-rate", "1.5"])
    assert result.exit_code == 2 and "variation-rate" in result.output


def test_paired_split_reals_are_the_forgeries_untouched_originals(tmp_path):
    """--paired train: each train real is its forgery's crop before the manipulation (it differs from
    the forgery exactly on the mask, through the same capture variation); forgeries and the other
    splits are byte-identical to an unpaired run; the card and the CLI say so."""
    synthesize(tmp_path / "plain", n=40, seed=4, workers=1, variations="train", variation_rate=0.5)
    summary = synthesize(tmp_path / "paired", n=40, seed=4, workers=2, variations="train", variation_rate=0.5,
                         paired="train")
    assert summary.paired_splits == ["train"]
    plain, paired = _files(tmp_path / "plain"), _files(tmp_path / "paired")
    records = _records(tmp_path / "paired")
    by_id = {r.id: r for r in records}
    originals = [r for r in records if "original_of" in r.meta]
    train_reals = [r for r in records if r.split == "train" and r.label == "real"]
    train_fakes = [r for r in records if r.split == "train" and r.label == "fake"]
    assert originals and len(originals) == min(len(train_reals), len(train_fakes))
    assert {r.split for r in originals} == {"train"}
    assert len({r.meta["original_of"] for r in originals}) == len(originals)
    for r in originals:
        fake = by_id[r.meta["original_of"]]
        assert fake.label == "fake" and fake.split == "train" and r.meta["photo"] == fake.meta["photo"]
        assert r.meta["crop_box"] == fake.meta["crop_box"] and r.meta.get("capture") == fake.meta.get("capture")
        original = np.asarray(Image.open(tmp_path / "paired" / r.image)).astype(int)
        forged = np.asarray(Image.open(tmp_path / "paired" / fake.image)).astype(int)
        mask = np.asarray(Image.open(tmp_path / "paired" / fake.mask)) > 0
        np.testing.assert_array_equal((original != forged).any(-1), mask)
    for r in records:
        if "original_of" not in r.meta:
            assert plain[r.image] == paired[r.image], r.id
    assert "Pairs in split(s) `train`" in (tmp_path / "paired" / "README.md").read_text()
    from forenx.cli import app

    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "cli"), "--n", "10", "--workers", "1",
                                      "--size", "128", "--paired", "trian"])
    assert result.exit_code == 2 and "--paired trian: unknown split" in result.output
