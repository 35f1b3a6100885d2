"""So-Fake-OOD (saberzl/So-Fake-OOD), Hugging Face parquet with the images inside.

**The label ids changed between versions**: v1 ``0 = full_synthetic, 1 = real, 2 = tampered``;
v2 ``0 = real, 1 = tampered, 2 = full_synthetic`` plus ``generator, source, filename, split``
columns. The ClassLabel names are read from each parquet file's metadata
(:mod:`forenx.data.converters.hub_parquet`); no id order is assumed.

Images (and tampering masks) are written byte for byte under ``<root>/<image_prefix or
"so_fake">/<split>/<class>/``. No explanations are distributed, so records carry no quadruples.
"""

from __future__ import annotations

import os
from pathlib import Path

from forenx.data.converters.base import ConversionResult
from forenx.data.converters.hub_parquet import convert_parquet

__all__ = ["CLASSES", "NAME", "convert"]

NAME = "so_fake"
#: So-Fake class name -> ForenX label.
CLASSES = {"real": "real", "full_synthetic": "fake", "tampered": "fake"}


def convert(
    src: str | os.PathLike,
    *,
    image_prefix: str = "",
    split: str | None = None,
    root: str | os.PathLike | None = None,
) -> ConversionResult:
    """Convert So-Fake-OOD parquet file(s); the images are extracted under ``root`` (required)."""
    if root is None:
        raise ValueError(
            "So-Fake images are stored inside the parquet: pass --root DIR to extract them there"
        )
    return convert_parquet(
        Path(src),
        source=NAME,
        classes=CLASSES,
        root=Path(root),
        folder=image_prefix.strip("/") or NAME,
        split=split,
        default_split="test",  # So-Fake-OOD is an evaluation set
    )
