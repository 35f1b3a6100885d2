"""ForgerySynth's sample writer: plan the samples, render them (in parallel), write the data set.

Layout of ``out_dir``::

    records.jsonl                 one forenx Record per line, in sample order
    images/<split>/<index>.png    every sample, lossless PNG
    masks/<split>/<index>.png     fakes only: 255 = changed pixel, 0 = untouched
    README.md                     the dataset card

Determinism: the plan (split, label, photo, family, donor of every sample) is drawn in the main
process from the seed alone; each sample is then rendered from its own generator
``default_rng([seed, 1, index])``, so the output does not depend on the number of workers, and the
same seed gives byte-identical files (with the same Pillow / NumPy / SciPy builds: libjpeg and
float filters may differ in the last bit between versions). Everything is stored as PNG (Pillow writes no timestamps);
the double-JPEG family's JPEG passes happen in memory and its decoded pixels are stored as PNG, so
no further compression alters its traces.

Capture variations (``variations=``, see :mod:`forenx.data.synth.capture`): in the named splits
each crop (and each splice donor) first goes through a random global "camera pipeline" change, so
a few photographs give many plausible ones; the other splits keep plain crops of the photos.

Pairs (``paired=``): in the named splits each real sample is the untouched original of one forgery
(the same crop, through the same capture variation, before the manipulation); its record says
which in ``meta["original_of"]`` (the forgery's record id). A detector trained on pairs can only
tell them apart by the manipulation itself, never by the photograph's content
(``forensic_pair_weight`` in the SFT recipe ranks each forgery above its original).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forenx.data.records import Record
from forenx.data.synth.capture import aligned_crop, capture_variation
from forenx.data.synth.manipulations import FAMILIES, NoVisibleChange
from forenx.data.synth.photos import (
    Photo,
    default_photos,
    load_photos,
    parse_split_groups,
    parse_splits,
    photos_from_dir,
    split_groups,
)
from forenx.data.synth.procedural import palette_of, procedural_catalogue, procedural_image

__all__ = ["SOURCE", "SampleSpec", "SynthSummary", "plan_procedural", "plan_samples", "render_procedural",
           "render_sample", "synthesize"]

SOURCE = "forgerysynth"
# Crop origins are multiples of capture.CROP_ALIGN (8), so a JPEG source photo's own 8x8 grid stays aligned
# with the crop's grid (the double-JPEG family's shifted grid is then the only misaligned one).
_CROP_TRIES = 8


@dataclass(frozen=True)
class SampleSpec:
    """What one sample will be, decided before any pixel is touched."""

    index: int
    split: str
    label: str
    photo: str
    family: str | None = None
    donor: str | None = None
    #: For a paired real sample: the forgery whose untouched crop it is.
    original_of: SampleSpec | None = None

    @property
    def stem(self) -> str:
        return f"{self.index:06d}"

    def record_id(self, seed: int) -> str:
        return f"{SOURCE}-s{seed}-{self.stem}"


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote."""

    out_dir: str
    n: int
    seed: int
    size: int
    counts: dict[str, dict[str, int]]
    split_photos: dict[str, list[str]]
    skipped_photos: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    variation_splits: list[str] = field(default_factory=list)
    variation_rate: float = 1.0
    paired_splits: list[str] = field(default_factory=list)
    #: Photo groups pinned to splits (--split-groups); the other groups were shared out by the fractions.
    pinned_groups: dict[str, list[str]] = field(default_factory=dict)
    #: How many of the ``n`` samples are cropped from procedural (dead-leaves) photos (--procedural).
    procedural: int = 0
    procedural_photos: int = 0


def _balanced(rng: np.random.Generator, options: list[str], count: int) -> list[str]:
    """``count`` picks that cycle through ``options`` in freshly shuffled rounds (balanced counts)."""
    out: list[str] = []
    while len(out) < count:
        out.extend(options[i] for i in rng.permutation(len(options)))
    return out[:count]


def plan_samples(photos: list[Photo], n: int, seed: int, splits: dict[str, float], real_fraction: float,
                 families: list[str], paired: frozenset[str] = frozenset(),
                 pinned: dict[str, list[str]] | None = None) -> tuple[list[SampleSpec], dict[str, list[str]]]:
    """Decide every sample's split, label, photo, family and donor from the seed.

    Splits are by photo group (see :func:`split_groups`); a splice's donor is another group of the
    same split, so no photo's pixels reach two splits. In the ``paired`` splits the k-th real
    sample becomes the original of the k-th forgery (reals beyond the forgeries' count stay
    independent crops); nothing else changes. ``pinned``: photo groups pinned to splits (see
    :func:`split_groups`). Returns (specs, photo names per split).
    """
    if not 0.0 <= real_fraction <= 1.0:
        raise ValueError(f"--real-fraction {real_fraction}: must be between 0 and 1")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown manipulation families {unknown}; choose from {', '.join(FAMILIES)}")
    group_of = {p.name: p.group for p in photos}
    split_of_group = {g: s for s, gs in split_groups(sorted(set(group_of.values())), splits, seed, pinned).items()
                      for g in gs}
    rng = np.random.default_rng([seed, 0])
    names = [s for s, f in splits.items() if f > 0]
    raw = [n * splits[s] for s in names]
    counts = [int(np.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))[: n - sum(counts)]:
        counts[i] += 1
    specs: list[SampleSpec] = []
    split_photos: dict[str, list[str]] = {}
    for split, count in zip(names, counts):
        members = sorted(p.name for p in photos if split_of_group[p.group] == split)
        split_photos[split] = members
        _plan_split(specs, rng, split, count, members, group_of, real_fraction, families, split in paired)
    return specs, split_photos


def _plan_split(specs: list[SampleSpec], rng: np.random.Generator, split: str, count: int, members: list[str],
                group_of: dict[str, str], real_fraction: float, families: list[str], paired: bool) -> None:
    """Append ``count`` samples of ``split`` cropped from ``members`` to ``specs`` (indices continue)."""
    start = len(specs)
    n_real = round(count * real_fraction)
    labels = ["real"] * n_real + ["fake"] * (count - n_real)
    labels = [labels[i] for i in rng.permutation(count)]
    chosen = _balanced(rng, members, count)
    usable = [f for f in families if f != "splicing" or len({group_of[m] for m in members}) > 1]
    if not usable:
        raise ValueError(f"split {split!r} has one photo group only, so it cannot splice; "
                         "add photos or choose other families")
    fams = iter(_balanced(rng, usable, count - n_real))
    for label, photo in zip(labels, chosen):
        index = len(specs)
        if label == "real":
            specs.append(SampleSpec(index, split, "real", photo))
            continue
        family = next(fams)
        donor = None
        if family == "splicing":
            others = [m for m in members if group_of[m] != group_of[photo]]
            donor = others[int(rng.integers(len(others)))]
        specs.append(SampleSpec(index, split, "fake", photo, family, donor))
    if paired:
        _pair_up(specs, start)


def plan_procedural(specs: list[SampleSpec], photos: list[Photo], count: int, seed: int, split: str,
                    real_fraction: float, families: list[str], paired: bool) -> None:
    """Append ``count`` samples of ``split`` cropped from the procedural ``photos`` to ``specs``.

    Drawn from their own generator ``default_rng([seed, 4])`` after every other sample, so the
    photographs' samples are the same with or without them; splice donors are other procedural photos.
    """
    if count > 0 and not photos:
        raise ValueError(f"--procedural {count} samples need procedural photos (--procedural-photos at least 1)")
    group_of = {p.name: p.group for p in photos}
    _plan_split(specs, np.random.default_rng([seed, 4]), split, count, [p.name for p in photos], group_of,
                real_fraction, families, paired)


def _pair_up(specs: list[SampleSpec], start: int) -> None:
    """Make the k-th real sample from ``specs[start]`` on the original of the k-th forgery (in place)."""
    reals = [i for i in range(start, len(specs)) if specs[i].label == "real"]
    fakes = [s for s in specs[start:] if s.label == "fake"]
    for i, fake in zip(reals, fakes):
        specs[i] = SampleSpec(specs[i].index, specs[i].split, "real", fake.photo, original_of=fake)


def _crop(rng: np.random.Generator, photo: np.ndarray, size: int, vary: bool
          ) -> tuple[np.ndarray, list[int], dict[str, Any] | None]:
    """A crop of ``photo``: plain, or (``vary``) through a capture variation; returns its parameters too."""
    if vary:
        return capture_variation(rng, photo, size)
    crop, box = aligned_crop(rng, photo, size)
    return crop, box, None


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Level 3: within 1% of level 6's size on photos, at half the encoding time.
    Image.fromarray(array).save(path, format="PNG", compress_level=3)


def _forge(spec: SampleSpec, photos: dict[str, np.ndarray], size: int, vary: bool, rng: np.random.Generator):
    """Crop (and vary) the photo and apply the family, redrawing the crop when nothing visibly changed.

    Returns (crop before the manipulation, its box, its capture parameters, the manipulation,
    the donor's crop box and capture parameters)."""
    for _ in range(_CROP_TRIES):
        crop, crop_box, capture = _crop(rng, photos[spec.photo], size, vary)
        donor = donor_crop = donor_capture = None
        if spec.donor is not None:
            donor, donor_crop, donor_capture = _crop(rng, photos[spec.donor], size, vary)
        try:
            return crop, crop_box, capture, FAMILIES[spec.family](crop, rng, donor=donor), donor_crop, donor_capture
        except NoVisibleChange:
            continue
    raise RuntimeError(f"sample {spec.index}: {spec.family} could not visibly change any of "
                       f"{_CROP_TRIES} crops of photo {spec.photo!r} (is it uniform?)")


def render_sample(spec: SampleSpec, photos: dict[str, np.ndarray], out_dir: Path, seed: int, size: int,
                  vary: bool = False) -> Record:
    """Render one planned sample, write its image (and mask), and return its record.

    ``vary``: crop through a capture variation (its parameters go to ``meta["capture"]``). A paired
    real sample (``spec.original_of``) re-renders its forgery from the forgery's own generator and
    keeps the crop from before the manipulation.
    """
    rng = np.random.default_rng([seed, 1, spec.index])
    image_path = f"images/{spec.split}/{spec.stem}.png"
    record_id = spec.record_id(seed)
    meta: dict[str, Any] = {"photo": spec.photo, "seed": seed, "index": spec.index}
    if spec.label == "real":
        if spec.original_of is not None:
            fake = spec.original_of
            crop, crop_box, capture, *_ = _forge(fake, photos, size, vary, np.random.default_rng([seed, 1, fake.index]))
            meta["original_of"] = fake.record_id(seed)
        else:
            crop, crop_box, capture = _crop(rng, photos[spec.photo], size, vary)
        _save_png(crop, out_dir / image_path)
        meta["crop_box"] = crop_box
        if capture is not None:
            meta["capture"] = capture
        return Record(id=record_id, image=image_path, label="real", generator="camera", source=SOURCE,
                      summary=f"An unedited {size}x{size} crop of a photograph, with no manipulation.",
                      split=spec.split, meta=meta)
    crop, crop_box, capture, result, donor_crop, donor_capture = _forge(spec, photos, size, vary, rng)
    mask_path = f"masks/{spec.split}/{spec.stem}.png"
    _save_png(result.forged, out_dir / image_path)
    _save_png(result.mask, out_dir / mask_path)
    meta["crop_box"] = crop_box
    if capture is not None:
        meta["capture"] = capture
    params = dict(result.params)
    if spec.donor is not None:
        params["donor_photo"] = spec.donor
        params["donor_crop_box"] = donor_crop
        if donor_capture is not None:
            params["donor_capture"] = donor_capture
    meta["params"] = params
    return Record(id=record_id, image=image_path, label="fake", generator=spec.family, source=SOURCE,
                  quadruples=result.quadruples, summary=result.summary, mask=mask_path,
                  boxes=[list(q.box) for q in result.quadruples if q.box is not None],
                  split=spec.split, meta=meta)


# Worker state: set once per process by the pool initializer (inherited as-is under fork).
_STATE: dict[str, Any] = {}


def _init_worker(photos: dict[str, np.ndarray], out_dir: str, seed: int, size: int, vary_splits: frozenset[str],
                 variation_rate: float = 1.0) -> None:
    _STATE.update(photos=photos, out_dir=Path(out_dir), seed=seed, size=size, vary_splits=vary_splits,
                  variation_rate=variation_rate)


def is_varied(spec: SampleSpec, seed: int, vary_splits: frozenset[str], rate: float) -> bool:
    """Whether ``spec`` goes through a capture variation: its split is named and a draw from its own
    stream (independent of the crop's) falls below ``rate``; at rate 1 every sample of the split is."""
    return spec.split in vary_splits and (rate >= 1.0 or float(np.random.default_rng([seed, 2, spec.index]).random()) < rate)


def _render_in_worker(spec: SampleSpec) -> dict[str, Any]:
    # A paired original goes through its forgery's variation (or none), whatever its own draw.
    vary = is_varied(spec.original_of or spec, _STATE["seed"], _STATE["vary_splits"], _STATE["variation_rate"])
    return render_sample(spec, _STATE["photos"], _STATE["out_dir"], _STATE["seed"], _STATE["size"], vary=vary).to_dict()


def _pool(workers: int, initializer: Callable[..., None], init_args: tuple[Any, ...]) -> Any:
    """A process pool; forked where the platform can, so the workers inherit the photos without a copy."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers, initializer, init_args)


def _init_procedural(palette: np.ndarray, seed: int) -> None:
    _STATE.update(palette=palette, seed=seed)


def _procedural_in_worker(k: int) -> np.ndarray:
    return procedural_image(_STATE["palette"], _STATE["seed"], k)


def render_procedural(photos: list[Photo], palette: np.ndarray, seed: int, workers: int = 1
                      ) -> dict[str, np.ndarray]:
    """The arrays of :func:`~forenx.data.synth.procedural.procedural_catalogue`'s ``photos`` by name (the k-th is
    :func:`~forenx.data.synth.procedural.procedural_image` ``(palette, seed, k)``); the same for any ``workers``."""
    if workers <= 1 or len(photos) <= 1:
        arrays = [procedural_image(palette, seed, k) for k in range(len(photos))]
    else:  # the palette reaches each worker once, through the initializer, not with every image's task
        with _pool(min(workers, len(photos)), _init_procedural, (palette, seed)) as pool:
            arrays = pool.map(_procedural_in_worker, range(len(photos)), chunksize=1)
    return {photo.name: array for photo, array in zip(photos, arrays)}


def parse_split_names(variations: str | list[str], splits: list[str], option: str = "--variations"
                      ) -> frozenset[str]:
    """The splits named by ``variations`` (``"none"``, ``"all"`` or split names, comma-separated),
    for the command-line ``option`` (named in errors).

    >>> sorted(parse_split_names("train", ["train", "val"])), sorted(parse_split_names("all", ["train", "val"]))
    (['train'], ['train', 'val'])
    >>> parse_split_names("tran", ["train", "val"])
    Traceback (most recent call last):
    ...
    ValueError: --variations tran: unknown split(s) ['tran']; use none, all or some of train, val
    """
    names = [v.strip() for v in (variations.split(",") if isinstance(variations, str) else variations) if v.strip()]
    if names in ([], ["none"]):
        return frozenset()
    if names == ["all"]:
        return frozenset(splits)
    unknown = [v for v in names if v not in splits]
    if unknown:
        raise ValueError(f"{option} {','.join(names)}: unknown split(s) {unknown}; use none, all or some of "
                         f"{', '.join(splits)}")
    return frozenset(names)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass --overwrite to replace a previous "
                                  "ForgerySynth output there, or choose an empty folder")
        for name in ("images", "masks"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("records.jsonl", "README.md"):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def synthesize(out_dir: str | os.PathLike, n: int, seed: int, photos: str | os.PathLike | list[Photo] | None = None,
               size: int = 256, real_fraction: float = 0.5, splits: str | dict[str, float] = "train=0.8,val=0.1,test=0.1",
               families: list[str] | None = None, workers: int | None = None, overwrite: bool = False,
               progress: Callable[[int], None] | None = None, variations: str | list[str] = "none",
               variation_rate: float = 1.0, paired: str | list[str] = "none",
               pinned_groups: str | dict[str, list[str]] | None = None, extra_photos: bool = False,
               procedural: int = 0, procedural_photos: int = 200) -> SynthSummary:
    """Write a ForgerySynth data set of ``n`` samples to ``out_dir``; same seed, same bytes.

    ``photos``: a folder of photographs, or a list of :class:`Photo` (e.g. some of :func:`default_photos`);
    default: the scikit-image / scikit-learn samples, with ``extra_photos`` also those of matplotlib,
    PyWavelets and mahotas.
    ``workers``: processes to render with (default: the CPU count); the output does not depend on it.
    ``progress``: called with the number of samples finished so far.
    ``variations``: the splits whose crops go through capture variations: ``"none"`` (default),
    ``"all"``, or split names (``"train"``, ``"train,val"`` or a list).
    ``variation_rate``: the share of those splits' samples that are varied (the others stay plain
    crops, byte-identical to a run without variations); measured on the forenx-nano data, a mix
    (0.5) let a detector call far more held-out plain photographs real than all-varied training did.
    ``paired``: the splits whose real samples are the forgeries' untouched originals (same syntax
    as ``variations``; see the module docstring).
    ``pinned_groups``: photo groups pinned to splits, ``"val=astronaut+coffee,test=camera+flower"`` or a
    dict; the other groups are shared out among the other splits by their fractions. Pinning keeps the
    held-out photos fixed when photos are added.
    ``procedural``: that many more samples for the ``train`` split, cropped from ``procedural_photos``
    dead-leaves images (:mod:`forenx.data.synth.procedural`) painted in the training photographs'
    colours; they come after the ``n`` samples, which stay byte-identical to a run without them.
    """
    from forenx.data.synth.card import write_card

    start = time.perf_counter()
    if n < 1:
        raise ValueError(f"--n {n}: need at least one sample")
    if size < 32:
        raise ValueError(f"--size {size}: crops must be at least 32 px")
    fractions = parse_splits(splits) if isinstance(splits, str) else parse_splits(
        ",".join(f"{k}={v}" for k, v in splits.items()))
    families = list(families or FAMILIES)
    vary_splits = parse_split_names(variations, list(fractions))
    paired_splits = parse_split_names(paired, list(fractions), "--paired")
    if not 0.0 < variation_rate <= 1.0:
        raise ValueError(f"--variation-rate {variation_rate}: must be in (0, 1] (the share of the --variations "
                         "splits' samples that are varied)")
    pinned = parse_split_groups(pinned_groups) if isinstance(pinned_groups, str | None) else {
        k: list(v) for k, v in pinned_groups.items()}
    if photos is not None and extra_photos:
        raise ValueError("--extra-photos adds to the default photographs; with --photos DIR, put every photo "
                         "you want in that folder")
    if isinstance(photos, list | tuple):
        catalogue = list(photos)
    else:
        catalogue = photos_from_dir(photos) if photos is not None else default_photos(extra_photos)
    arrays, skipped = load_photos(catalogue, size)
    usable = [p for p in catalogue if p.name in arrays]
    if not usable:
        raise ValueError(f"no usable photo for {size}x{size} crops: " + "; ".join(skipped))
    if procedural < 0 or procedural_photos < 0:
        raise ValueError(f"--procedural {procedural} / --procedural-photos {procedural_photos}: must not be negative")
    if procedural and fractions.get("train", 0) <= 0:
        raise ValueError(f"--procedural adds training samples, but there is no train split in --splits "
                         f"({', '.join(fractions)})")
    specs, split_photos = plan_samples(usable, n, seed, fractions, real_fraction, families, paired_splits, pinned)
    workers = workers or os.cpu_count() or 1
    made: list[Photo] = []
    if procedural:
        made = procedural_catalogue(procedural_photos)
        plan_procedural(specs, made, procedural, seed, "train", real_fraction, families, "train" in paired_splits)
        palette = palette_of([arrays[name] for name in split_photos["train"]], np.random.default_rng([seed, 3]))
        arrays = {**arrays, **render_procedural(made, palette, seed, workers)}

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    workers = max(1, min(workers, len(specs)))
    records: list[dict[str, Any]] = []
    if workers == 1:
        _init_worker(arrays, str(out), seed, size, vary_splits, variation_rate)
        for spec in specs:
            records.append(_render_in_worker(spec))
            if progress:
                progress(len(records))
    else:
        init_args = (arrays, str(out), seed, size, vary_splits, variation_rate)
        with _pool(workers, _init_worker, init_args) as pool:
            # imap keeps the sample order, whatever order the workers finish in.
            for record in pool.imap(_render_in_worker, specs, chunksize=8):
                records.append(record)
                if progress:
                    progress(len(records))
    with open(out / "records.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    counts: dict[str, dict[str, int]] = {}
    for record in records:
        key = record["generator"] if record["label"] == "fake" else "real"
        counts.setdefault(record["split"], Counter())[key] += 1
    counts = {split: dict(sorted(c.items())) for split, c in counts.items()}
    summary = SynthSummary(out_dir=str(out), n=len(specs), seed=seed, size=size, counts=counts,
                           split_photos=split_photos, skipped_photos=skipped, workers=workers,
                           variation_splits=sorted(vary_splits),
                           variation_rate=variation_rate if vary_splits else 1.0,
                           paired_splits=sorted(paired_splits), pinned_groups=pinned, procedural=len(specs) - n,
                           procedural_photos=len(made))
    write_card(out / "README.md", summary, usable, fractions, real_fraction, families)
    summary.seconds = time.perf_counter() - start
    return summary
