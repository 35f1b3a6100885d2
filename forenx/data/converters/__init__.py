"""Converters from the field's public datasets to ForenX records, one module per dataset.

Every converter is ``convert(src, *, image_prefix="", split=None) -> ConversionResult`` and is
listed in :data:`CONVERTERS` under the name ``forenx data convert --from NAME`` takes.

>>> sorted(CONVERTERS)
['anomreason', 'fakeclue', 'loki', 'mmfr', 'mmtd_set', 'sid_set', 'so_fake', 'synthscars']
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forenx.data.converters import anomreason, fakeclue, loki, mmfr, mmtd_set, sid_set, so_fake, synthscars
from forenx.data.converters.base import ConversionResult, Skipped

__all__ = ["CONVERTERS", "ConversionResult", "Converter", "Skipped", "convert"]


@dataclass(frozen=True)
class Converter:
    name: str
    convert: Callable[..., ConversionResult]
    #: What SRC is, as ``forenx data convert --help`` shows it.
    source: str
    card: str


CONVERTERS: dict[str, Converter] = {
    c.name: c
    for c in (
        Converter(
            anomreason.NAME,
            anomreason.convert,
            "gt_*.json or pre_*.json ({image: [anomalies]})",
            "anomreason.md",
        ),
        Converter(fakeclue.NAME, fakeclue.convert, "a FakeClue JSON array", "fakeclue.md"),
        Converter(
            mmfr.NAME, mmfr.convert, "forgery_reasoning_cot.json or <generator>_reasoning.json", "mmfr.md"
        ),
        Converter(
            synthscars.NAME, synthscars.convert, "a SynthScars/LEGION annotation JSON", "synthscars.md"
        ),
        Converter(loki.NAME, loki.convert, "a LOKI data_json/image/*.json file or that folder", "loki.md"),
        Converter(
            sid_set.NAME,
            sid_set.convert,
            "the SID-Set folder (<split>/{real,full_synthetic,tampered}/)",
            "sid_set.md",
        ),
        Converter(mmtd_set.NAME, mmtd_set.convert, "an MMTD-Set JSON (LLaVA format)", "mmtd_set.md"),
        Converter(
            so_fake.NAME,
            so_fake.convert,
            "So-Fake-OOD parquet file(s) (images extracted under --root)",
            "so_fake.md",
        ),
    )
}


def convert(
    name: str,
    src: str | os.PathLike,
    *,
    image_prefix: str = "",
    split: str | None = None,
    root: str | os.PathLike | None = None,
    **options,
) -> ConversionResult:
    """Run the converter ``name``; with ``root``, records whose image is not under it are skipped.

    ``options`` go to the dataset's own ``convert`` (e.g. SynthScars' ``mask_dir``), and so does
    ``root`` when that converter takes one.

    Only existence is checked here (fast); ``forenx data validate`` decodes every image.
    """
    from forenx.data.io import PathOutsideRootError, resolve_in_root

    if name not in CONVERTERS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(CONVERTERS))}")
    if not Path(src).exists():
        raise FileNotFoundError(f"{name} source {str(src)!r} not found")
    function = CONVERTERS[name].convert
    if root is not None and "root" in inspect.signature(function).parameters:
        options["root"] = root
    result = function(src, image_prefix=image_prefix, split=split, **options)
    if root is None:
        return result
    kept = []
    for record in result.records:
        try:
            found = resolve_in_root(root, record.image).is_file()
        except PathOutsideRootError as exc:
            result.skip(record.id, str(exc))
            continue
        if not found:
            result.skip(record.id, f"image {record.image!r} not found under {root}")
            continue
        kept.append(record)
    result.records = kept
    return result
