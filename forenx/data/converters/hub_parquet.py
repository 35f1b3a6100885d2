"""Hugging Face parquet with images inside (SID-Set, So-Fake): label names, rows, byte-exact extraction.

Labels are ``ClassLabel`` ids whose meaning is stored in each file's ``huggingface`` schema
metadata; the names are read from there and ids are never assumed (So-Fake's changed between
versions). Images and masks are written to disk byte for byte: re-encoding would erase the very
compression traces forensics relies on.

>>> class_names_from_metadata({b"huggingface": b'{"info": {"features": {"label": '
...     b'{"_type": "ClassLabel", "names": ["real", "tampered", "full_synthetic"]}}}}'})
['real', 'tampered', 'full_synthetic']
>>> extension_of(b"\\x89PNG\\r\\n\\x1a\\n..."), extension_of(b"\\xff\\xd8\\xff\\xe0...")
('.png', '.jpg')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from forenx.data.converters.base import ConversionResult
from forenx.data.records import Record

__all__ = ["class_names_from_metadata", "convert_parquet", "extension_of", "parquet_files", "split_from_path"]

_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def class_names_from_metadata(metadata: Mapping[bytes, bytes] | None, column: str = "label") -> list[str]:
    """The ClassLabel names of ``column`` from a parquet schema's ``huggingface`` metadata."""
    if not metadata or b"huggingface" not in metadata:
        raise ValueError("no 'huggingface' schema metadata: cannot tell which label id means what")
    features = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {})
    feature = features.get(column) or {}
    if feature.get("_type") != "ClassLabel" or not feature.get("names"):
        raise ValueError(f"column {column!r} is not a ClassLabel with names in the parquet metadata")
    return list(feature["names"])


def extension_of(data: bytes) -> str:
    """The file extension an image's bytes call for (".png" when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), ".png")


def parquet_files(src: Path) -> list[Path]:
    if src.is_dir():
        files = sorted(src.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet under {src}")
        return files
    return [src]


def split_from_path(path: Path, default: str) -> str:
    """The split named by the file or its nearest folder (``data/validation-00000-of-00003.parquet``).

    >>> split_from_path(Path("/tmp/test_run/hub/data/validation-00000-of-00001.parquet"), "train")
    'validation'
    """
    for part in reversed(path.parts[-3:]):
        match = re.search(r"(?:^|[_\-.])(train|validation|val|test)(?:[_\-.]|$)", part.lower())
        if match:
            return match.group(1)
    return default


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    # Batches keep memory flat on multi-gigabyte shards.
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _file_name(row: Mapping[str, Any], image: Mapping[str, Any], index: int) -> str:
    if row.get("filename"):
        return PurePosixPath(str(row["filename"])).name
    if image.get("path"):
        return PurePosixPath(str(image["path"])).name
    stem = str(row.get("img_id") or index)
    return stem if PurePosixPath(stem).suffix else stem + extension_of(image["bytes"])


def convert_parquet(
    src: Path,
    *,
    source: str,
    classes: Mapping[str, str],
    root: Path,
    folder: str,
    split: str | None,
    default_split: str,
) -> ConversionResult:
    """Rows of ClassLabel-labelled parquet -> records, images extracted to ``root/folder/<split>/<class>/``.

    ``classes`` maps the dataset's class names to ForenX labels; a file whose names are not all in
    it, or that stores no names, is skipped and reported.
    """
    import pyarrow.parquet as pq

    result = ConversionResult()
    seen: set[str] = set()
    for path in parquet_files(src):
        try:
            names = class_names_from_metadata(pq.read_schema(path).metadata)
        except ValueError as exc:
            result.skip(path.name, f"{exc}; file left out")
            continue
        unknown = [n for n in names if n not in classes]
        if unknown:
            result.skip(path.name, f"unknown class names {unknown}; file left out")
            continue
        for index, row in enumerate(_rows(path)):
            where = f"{path.name} row {index}"
            label_id, image = row.get("label"), row.get("image") or {}
            if not isinstance(label_id, int) or not 0 <= label_id < len(names):
                result.skip(where, f"label {label_id!r} is not a class id of {names}")
                continue
            if not image.get("bytes"):
                result.skip(where, "no image bytes in the row")
                continue
            class_name = names[label_id]
            file_name = _file_name(row, image, index)
            row_split = split or row.get("split") or split_from_path(path, default_split)
            stem = PurePosixPath(file_name).stem
            record_id = f"{row_split}__{class_name}__{stem}"
            if record_id in seen:
                result.skip(where, f"{file_name} appears twice in {row_split}/{class_name}")
                continue
            seen.add(record_id)
            relative = f"{folder}/{row_split}/{class_name}/{file_name}"
            _write(root / relative, image["bytes"])
            mask = None
            if (row.get("mask") or {}).get("bytes"):
                mask = f"{folder}/{row_split}/masks/{stem}_mask.png"
                _write(root / mask, row["mask"]["bytes"])
            elif class_name == "tampered":
                result.skip(f"{where} mask", "tampered image without a mask; record kept without one")
            extras = {k: row[k] for k in ("width", "height") if row.get(k) is not None}
            if row.get("source"):
                extras["origin"] = row["source"]
            result.records.append(
                Record(
                    id=record_id,
                    image=relative,
                    label=classes[class_name],
                    generator=row.get("generator") or None,
                    source=source,
                    mask=mask,
                    split=row_split,
                    meta={"class": class_name, "label_id": label_id, "class_names": names, **extras},
                )
            )
    return result
