"""The source photographs ForgerySynth crops from, and their split by photo.

By default: the natural photographs that scikit-image and scikit-learn ship inside their installed
packages (nothing is downloaded; scikit-image fetches some of its samples with pooch, those are
not used). Any folder of the user's with ``--photos``.

Splits are made by *photo group*, never by crop: ``motorcycle_left`` and ``motorcycle_right`` are
one stereo scene, so they form one group and always land in the same split.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forenx.images import IMAGE_EXTENSIONS, ImageLoadError, load_image

__all__ = [
    "DEFAULT_PHOTOS",
    "Photo",
    "default_photos",
    "load_photos",
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


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (importing scikit-learn takes seconds).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed; install it or pass --photos DIR")
    return Path(next(iter(spec.submodule_search_locations)))


# (file, group, licence) for the shipped samples; licences as stated in skimage.data's docstrings
# and sklearn/datasets/images/README.txt. Left out: synthetic drawings (logo, chessboard, colour
# wheel, horse silhouette), images smaller than 256 px on a side (page, text, microaneurysms),
# clock_motion (already motion-blurred: it would confuse the blur family) and moon (no licence
# stated).
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


def default_photos() -> list[Photo]:
    """The shipped sample photos that are present in the installed packages.

    >>> photos = default_photos()
    >>> len(photos) >= 10 and photos[0].name
    'astronaut'
    """
    roots = {"skimage": _package_dir("skimage") / "data",
             "sklearn": _package_dir("sklearn") / "datasets" / "images"}
    photos = []
    for package, filename, group, license_ in DEFAULT_PHOTOS:
        path = roots[package] / filename
        if path.is_file():
            photos.append(Photo(name=Path(filename).stem, path=str(path), group=group, license=license_))
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


def load_photos(photos: list[Photo], size: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode each photo to an RGB uint8 array; photos that cannot give a ``size`` crop are skipped.

    Returns (arrays by name, skip reasons). Decoding goes through :func:`forenx.images.load_image`.
    """
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for photo in photos:
        try:
            array = np.asarray(load_image(photo.path), dtype=np.uint8)
        except ImageLoadError as err:
            skipped.append(f"{photo.path}: {err.reason}")
            continue
        if array.shape[0] < size or array.shape[1] < size:
            skipped.append(f"{photo.path}: {array.shape[1]}x{array.shape[0]} is smaller than the "
                           f"{size}x{size} crop (photos are never upscaled: resizing erases traces)")
            continue
        arrays[photo.name] = array
    return arrays, skipped


def parse_splits(text: str) -> dict[str, float]:
    """Parse ``train=0.8,val=0.1,test=0.1`` into normalised fractions.

    >>> parse_splits("train=0.8,val=0.1,test=0.1")
    {'train': 0.8, 'val': 0.1, 'test': 0.1}
    >>> parse_splits("train=3,test=1")
    {'train': 0.75, 'test': 0.25}
    """
    fractions: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or not name or number < 0:
            raise ValueError(f"--splits {text!r}: each part must be NAME=FRACTION, e.g. train=0.8,val=0.1,test=0.1")
        if name in fractions:
            raise ValueError(f"--splits {text!r}: split {name!r} is given twice")
        fractions[name] = number
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


def split_groups(groups: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Assign photo groups to splits (disjoint), shuffled by ``seed``.

    Every split with a positive fraction gets at least one group, and two where there are enough
    groups, so that splicing can take its donor from another photo of the same split.

    >>> split_groups(["a", "b", "c", "d", "e"], {"train": 0.6, "test": 0.4}, seed=0)
    {'train': ['b', 'd', 'e'], 'test': ['a', 'c']}
    """
    unique = sorted(set(groups))
    names = [n for n, f in fractions.items() if f > 0]
    if len(unique) < len(names):
        raise ValueError(f"{len(unique)} photo group(s) cannot fill {len(names)} disjoint splits "
                         f"({', '.join(names)}); add photos or pass fewer splits, e.g. --splits train=1")
    counts = _largest_remainder(len(unique), [fractions[n] for n in names])
    for minimum in (1, 2):
        for i in range(len(names)):
            while counts[i] < minimum:
                donor = max(range(len(names)), key=lambda j: (counts[j], -j))
                if counts[donor] <= minimum:
                    break
                counts[donor] -= 1
                counts[i] += 1
    order = [unique[i] for i in np.random.default_rng([seed, 0x5EED]).permutation(len(unique))]
    out, start = {}, 0
    for name, count in zip(names, counts):
        out[name] = sorted(order[start:start + count])
        start += count
    return out
