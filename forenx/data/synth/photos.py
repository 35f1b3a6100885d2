"""The source photographs ForgerySynth crops from, and their split by photo.

By default: the natural photographs that scikit-image and scikit-learn ship inside their installed
packages; ``--extra-photos`` adds those of matplotlib, PyWavelets and mahotas (the ``photos`` extra:
``pip install 'forenx[photos]'``). Which photos are used depends only on the options, never on
what else happens to be installed. Nothing is downloaded; scikit-image fetches some of its samples
with pooch, those are not used. Any folder of the user's with ``--photos``.

Splits are made by *photo group*, never by crop: ``motorcycle_left`` and ``motorcycle_right`` are
one stereo scene, so they form one group and always land in the same split. Groups can be pinned
to a split (``--split-groups test=camera+flower``); the others are shared out by the fractions.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forenx.images import IMAGE_EXTENSIONS, ImageLoadError, load_image

__all__ = [
    "DEFAULT_PHOTOS",
    "EXTRA_PHOTOS",
    "PHOTO_PACKAGES",
    "Photo",
    "default_photos",
    "load_photos",
    "parse_split_groups",
    "parse_splits",
    "photos_from_dir",
    "split_groups",
]


@dataclass(frozen=True)
class Photo:
    """One source photograph."""

    #: Unique name (file stem for the shipped samples, relative path for a user folder).
    name: str
    path: str
    #: Photos of the same scene share a group; splits are made by group.
    group: str
    #: Where the photo comes from and under which terms (copied into the dataset card).
    license: str


#: Where each package keeps its sample images (inside the installed package).
PHOTO_PACKAGES: dict[str, str] = {
    "skimage": "data",
    "sklearn": "datasets/images",
    "matplotlib": "mpl-data/sample_data",
    "pywt": "data",
    "mahotas": "demos/data",
}


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it (importing scikit-learn takes seconds).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# (package, file, group, licence) for the shipped samples; licences as stated in skimage.data's
# docstrings, sklearn/datasets/images/README.txt, scipy.datasets.ascent's docstring (PyWavelets ships
# the same array as .npz) and the packages' own licences. Left out: synthetic drawings (logo,
# chessboard, colour wheel, horse silhouette, mahotas' "Where's Wally" page), images smaller than
# 256 px on a side (page, text, microaneurysms), clock_motion (already motion-blurred: it would
# confuse the blur family), moon and PyWavelets' aero (no source or licence stated), PyWavelets'
# camera (scikit-image's camera again), Lena.
DEFAULT_PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    ("skimage", "astronaut.png", "astronaut", "public domain (NASA)"),
    ("skimage", "coffee.png", "coffee", "CC0 (Rachel Michetti)"),
    ("skimage", "chelsea.png", "chelsea", "CC0 (Stefan van der Walt)"),
    ("skimage", "rocket.jpg", "rocket", "public domain (SpaceX)"),
    ("skimage", "motorcycle_left.png", "motorcycle", "Middlebury 2014 stereo benchmark (Scharstein et al.)"),
    ("skimage", "motorcycle_right.png", "motorcycle", "Middlebury 2014 stereo benchmark (Scharstein et al.)"),
    ("skimage", "hubble_deep_field.jpg", "hubble_deep_field", "public domain (NASA)"),
    ("skimage", "ihc.png", "immunohistochemistry", "no known copyright restrictions"),
    ("skimage", "retina.jpg", "retina", "CC0 1.0 (Mikael Häggström)"),
    ("skimage", "camera.png", "camera", "CC0 (Lav Varshney)"),
    ("skimage", "coins.png", "coins", "no known copyright restrictions (Walters Art Museum)"),
    ("skimage", "brick.png", "brick", "CC0 (CC0Textures)"),
    ("skimage", "grass.png", "grass", "CC0 (CC0Textures)"),
    ("skimage", "gravel.png", "gravel", "CC0 (CC0Textures)"),
    ("skimage", "cell.png", "cell", "CC0"),
    ("sklearn", "china.jpg", "china", "CC BY 2.0 (danielbuechele, Flickr)"),
    ("sklearn", "flower.jpg", "flower", "CC BY 2.0 (vultilion, Flickr)"),
)
#: Added by ``--extra-photos`` (packages of the ``photos`` extra).
EXTRA_PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    ("matplotlib", "grace_hopper.jpg", "grace_hopper", "public domain (U.S. Navy)"),
    ("pywt", "ascent.npz", "ascent", "public domain (public-domain-image.com, via SciPy)"),
    ("mahotas", "luispedro.jpg", "luispedro", "MIT, with mahotas (Luis Pedro Coelho)"),
    ("mahotas", "nuclear.png", "nuclear", "MIT, with mahotas (Luis Pedro Coelho)"),
)


def default_photos(extra: bool = False) -> list[Photo]:
    """The shipped sample photos present in the installed scikit-image / scikit-learn, and with
    ``extra`` those of the ``photos`` extra's packages (each of which must then be there: asked for
    by name, a missing one is an error, not a quietly smaller data set).

    >>> photos = default_photos()
    >>> len(photos) >= 10 and photos[0].name
    'astronaut'
    """
    photos = []
    entries = [(entry, False) for entry in DEFAULT_PHOTOS] + [(entry, True) for entry in EXTRA_PHOTOS if extra]
    roots = {package: _package_dir(package) for (package, *_), _ in entries}
    for (package, filename, group, license_), is_extra in entries:
        root = roots[package]
        if root is None:
            hint = " (pip install 'forenx[photos]')" if is_extra else ""
            raise FileNotFoundError(f"{package} is not installed{hint}; it ships the photo {filename}. Install it "
                                    "or pass a folder of photographs with --photos DIR")
        path = root / PHOTO_PACKAGES[package] / filename
        if path.is_file():
            photos.append(Photo(name=Path(filename).stem, path=str(path), group=group, license=license_))
        elif is_extra:
            raise FileNotFoundError(f"--extra-photos: {path} is missing from the installed {package}; reinstall "
                                    "it (pip install 'forenx[photos]')")
    if not photos:
        raise FileNotFoundError("no sample photos found in the installed scikit-image / scikit-learn; "
                                "pass a folder of photographs with --photos DIR")
    return photos


def photos_from_dir(directory: str | os.PathLike) -> list[Photo]:
    """Every image file under ``directory`` (recursive, sorted); each file is its own group."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"--photos {root}: not a folder; pass a folder of photographs")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"--photos {root}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    photos = []
    for p in files:
        name = p.relative_to(root).as_posix()
        photos.append(Photo(name=name, path=str(p), group=name, license="user-supplied"))
    return photos


def _read_npz(path: str) -> np.ndarray:
    """A sample image stored as a NumPy archive (PyWavelets' ``data`` arrays), as RGB uint8."""
    try:
        with np.load(path) as archive:
            array = archive["data"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ImageLoadError(path, f"not a NumPy archive with a 'data' image array ({err})") from None
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageLoadError(path, f"'data' is a {array.dtype} array of shape {array.shape}, not an 8-bit image")
    return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array)


def load_photos(photos: list[Photo], size: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode each photo to an RGB uint8 array; photos that cannot give a ``size`` crop are skipped.

    Returns (arrays by name, skip reasons). Decoding goes through :func:`forenx.images.load_image`.
    """
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for photo in photos:
        try:
            array = _read_npz(photo.path) if photo.path.endswith(".npz") else np.asarray(load_image(photo.path),
                                                                                          dtype=np.uint8)
        except ImageLoadError as err:
            skipped.append(f"{photo.path}: {err.reason}")
            continue
        if array.shape[0] < size or array.shape[1] < size:
            skipped.append(f"{photo.path}: {array.shape[1]}x{array.shape[0]} is smaller than the "
                           f"{size}x{size} crop (photos are never upscaled: resizing erases traces)")
            continue
        arrays[photo.name] = array
    return arrays, skipped


def _assignments(text: str | None, option: str, form: str) -> dict[str, str]:
    """``NAME=VALUE,NAME=VALUE`` (empty parts skipped) as ``{name: value}``; a part without a name or an ``=``,
    or a name given twice, is a ValueError naming ``option`` and the expected ``form``."""
    pairs: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{option} {text!r}: each part must be {form}")
        if name in pairs:
            raise ValueError(f"{option} {text!r}: split {name!r} is given twice")
        pairs[name] = value
    return pairs


def parse_splits(text: str) -> dict[str, float]:
    """Parse ``train=0.8,val=0.1,test=0.1`` into normalised fractions.

    >>> parse_splits("train=0.8,val=0.1,test=0.1")
    {'train': 0.8, 'val': 0.1, 'test': 0.1}
    >>> parse_splits("train=3,test=1")
    {'train': 0.75, 'test': 0.25}
    """
    form = "NAME=FRACTION, e.g. train=0.8,val=0.1,test=0.1"
    fractions: dict[str, float] = {}
    for name, value in _assignments(text, "--splits", form).items():
        try:
            fractions[name] = float(value)
        except ValueError:
            fractions[name] = -1.0
        if fractions[name] < 0:
            raise ValueError(f"--splits {text!r}: each part must be {form}")
    total = sum(fractions.values())
    if total <= 0:
        raise ValueError(f"--splits {text!r}: the fractions must sum to more than 0")
    return {name: value / total for name, value in fractions.items()}


def _largest_remainder(total: int, fractions: list[float]) -> list[int]:
    raw = [total * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def parse_split_groups(text: str | None) -> dict[str, list[str]]:
    """Parse ``val=astronaut+coffee,test=camera+flower`` (photo groups pinned to splits).

    >>> parse_split_groups("val=astronaut+coffee,test=camera+flower")
    {'val': ['astronaut', 'coffee'], 'test': ['camera', 'flower']}
    >>> parse_split_groups("")
    {}
    """
    form = "SPLIT=GROUP+GROUP..., e.g. val=astronaut+coffee,test=camera+flower"
    pinned: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for name, value in _assignments(text, "--split-groups", form).items():
        groups = [g.strip() for g in value.split("+") if g.strip()]
        if not groups:
            raise ValueError(f"--split-groups {text!r}: each part must be {form}")
        for group in groups:
            if group in seen:
                raise ValueError(f"--split-groups {text!r}: photo group {group!r} is pinned to both "
                                 f"{seen[group]!r} and {name!r}")
            seen[group] = name
        pinned[name] = groups
    return pinned


def split_groups(groups: list[str], fractions: dict[str, float], seed: int,
                 pinned: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Assign photo groups to splits (disjoint), shuffled by ``seed``.

    Every split with a positive fraction gets at least one group, and two where there are enough
    groups, so that splicing can take its donor from another photo of the same split. A split in
    ``pinned`` gets exactly its pinned groups; the other groups are shared out among the other
    splits by their fractions (with no pins, the assignment is the one it always was).

    >>> split_groups(["a", "b", "c", "d", "e"], {"train": 0.6, "test": 0.4}, seed=0)
    {'train': ['b', 'd', 'e'], 'test': ['a', 'c']}
    >>> split_groups(["a", "b", "c", "d", "e"], {"train": 0.6, "test": 0.4}, seed=0, pinned={"test": ["e"]})
    {'train': ['a', 'b', 'c', 'd'], 'test': ['e']}
    """
    unique = sorted(set(groups))
    pinned = pinned or {}
    for split, members in pinned.items():
        if fractions.get(split, 0) <= 0:
            raise ValueError(f"--split-groups pins photo groups to {split!r}, which is not one of the splits "
                             f"({', '.join(n for n, f in fractions.items() if f > 0)})")
        unknown = [g for g in members if g not in unique]
        if unknown:
            raise ValueError(f"--split-groups: no photo group {', '.join(map(repr, unknown))} among the photos "
                             f"(groups: {', '.join(unique)})")
    taken = {g for members in pinned.values() for g in members}
    free = [g for g in unique if g not in taken]
    names = [n for n, f in fractions.items() if f > 0 and n not in pinned]
    if free and not names:
        raise ValueError(f"--split-groups pins every split, so photo group(s) {', '.join(free)} would be in none; "
                         "pin them too or leave one split unpinned")
    if len(free) < len(names):
        raise ValueError(f"{len(free)} photo group(s) cannot fill {len(names)} disjoint splits "
                         f"({', '.join(names)}); add photos or pass fewer splits, e.g. --splits train=1")
    weights = [fractions[n] for n in names]
    if pinned and names:  # the unpinned splits share the free groups; without pins the fractions stay exact
        weights = [w / sum(weights) for w in weights]
    counts = _largest_remainder(len(free), weights)
    for minimum in (1, 2):
        for i in range(len(names)):
            while counts[i] < minimum:
                donor = max(range(len(names)), key=lambda j: (counts[j], -j))
                if counts[donor] <= minimum:
                    break
                counts[donor] -= 1
                counts[i] += 1
    order = [free[i] for i in np.random.default_rng([seed, 0x5EED]).permutation(len(free))]
    shared, start = {}, 0
    for name, count in zip(names, counts):
        shared[name] = sorted(order[start:start + count])
        start += count
    return {name: sorted(pinned[name]) if name in pinned else shared[name]
            for name, f in fractions.items() if f > 0}
