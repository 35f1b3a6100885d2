"""Record files: JSONL on disk, ``datasets.Dataset`` / ``IterableDataset`` in memory.

A record file holds one :class:`~forenx.data.records.Record` per line. Its ``image`` (and ``mask``)
paths are relative to a *data root*, by default the folder that holds the file. A path that would
resolve outside the root (``../``, an absolute path, a symlink pointing elsewhere) is refused, so a
record file can never make a training job read arbitrary files.

>>> import tempfile, pathlib
>>> from forenx.data.records import Record
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_records([Record(id="a", image="img/a.png", label="real")], folder / "data.jsonl")
1
>>> [r.id for r in read_records(folder / "data.jsonl")]
['a']
>>> resolve_in_root(folder, "../etc/passwd")
Traceback (most recent call last):
...
forenx.data.io.PathOutsideRootError: '../etc/passwd' resolves outside the data root ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forenx.data.records import Record

__all__ = [
    "JsonLine",
    "PathOutsideRootError",
    "RecordFileError",
    "decode_images",
    "default_root",
    "iter_json_lines",
    "iter_records",
    "load_records_dataset",
    "read_records",
    "record_features",
    "record_from_row",
    "records_to_dataset",
    "resolve_in_root",
    "stream_records_dataset",
    "write_records",
]


class RecordFileError(ValueError):
    """A record file cannot be read; the message names the file, the line and the fix."""


class PathOutsideRootError(ValueError):
    """A record's path escapes its data root."""


@dataclass
class JsonLine:
    """One non-blank line of a JSONL file: its 1-based number and the parsed value or the error."""

    line_no: int
    value: Any = None
    error: str | None = None


def iter_json_lines(path: str | os.PathLike) -> Iterator[JsonLine]:
    """Every non-blank line of a JSONL file, parsed; a bad line carries its error instead of raising."""
    with open(path, "rb") as handle:  # bytes: one undecodable line must not hide the others
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM written by Windows tools
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield JsonLine(
                    line_no, error=f"not UTF-8 text (byte {exc.start + 1}); re-save the file as UTF-8"
                )
                continue
            if not line.strip():
                continue
            try:
                yield JsonLine(line_no, json.loads(line.rstrip("\r\n")))
            except json.JSONDecodeError as exc:
                yield JsonLine(line_no, error=f"invalid JSON ({exc.msg} at column {exc.colno})")


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, Record]]:
    """(line number, Record) for each line. Raises :class:`RecordFileError` at the first bad line."""
    for item in iter_json_lines(path):
        if item.error is not None:
            raise RecordFileError(f"{path}:{item.line_no}: {item.error}; run `forenx data validate {path}`")
        try:
            yield item.line_no, Record.from_dict(item.value)
        except (ValueError, TypeError) as exc:
            raise RecordFileError(f"{path}:{item.line_no}: {exc}; run `forenx data validate {path}`") from exc


def read_records(path: str | os.PathLike) -> list[Record]:
    """All records of a JSONL file (no image checks: use :mod:`forenx.data.validate` for those)."""
    return [record for _, record in iter_records(path)]


def write_records(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records as JSONL (UTF-8, one per line) atomically; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with open(partial, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    os.replace(partial, path)  # a crash never leaves a half-written record file behind
    return count


def default_root(path: str | os.PathLike) -> Path:
    """The data root used when none is given: the folder that holds the record file."""
    return Path(path).resolve().parent


def resolve_in_root(root: str | os.PathLike, relative: str) -> Path:
    """The absolute path of ``relative`` under ``root``; raises if it escapes the root.

    Symlinks are resolved before the check, so a link inside the root that points outside it is
    refused as well.
    """
    if not isinstance(relative, str) or not relative:
        raise PathOutsideRootError(f"{relative!r} is not a relative path")
    if (
        os.path.isabs(relative)
        or relative.startswith(("/", "\\"))
        or (len(relative) > 1 and relative[1] == ":")
    ):
        raise PathOutsideRootError(f"{relative!r} is an absolute path; write it relative to the data root")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise PathOutsideRootError(
            f"{relative!r} resolves outside the data root {str(base)!r}; move the file under the root "
            "or pass a --root that contains it"
        )
    return target


# ----------------------------------------------------------------------------------------------
# datasets


def record_features():
    """The ``datasets.Features`` of a record table.

    ``image`` is an ``Image(decode=False)`` column (path + bytes): decoding goes through
    :func:`decode_images`, i.e. :func:`forenx.images.load_image`, so EXIF orientation, CMYK,
    16-bit, alpha and the pixel cap are handled the same way in every stage. ``meta`` is kept as a
    JSON string because its keys differ from source to source.
    """
    from datasets import Features, Image, List, Value

    quadruple = {
        "name": Value("string"),
        "phenomenon": Value("string"),
        "reasoning": Value("string"),
        "severity": Value("int32"),
        "source": Value("string"),
        "box": List(Value("float32")),
    }
    return Features(
        {
            "id": Value("string"),
            "image": Image(decode=False),
            "label": Value("string"),
            "generator": Value("string"),
            "source": Value("string"),
            "quadruples": List(quadruple),
            "summary": Value("string"),
            "mask": Value("string"),
            "boxes": List(List(Value("float32"))),
            "split": Value("string"),
            "meta": Value("string"),
        }
    )


def _row(record: Record, root: Path) -> dict[str, Any]:
    row = record.to_dict()
    row["image"] = {"path": str(resolve_in_root(root, record.image)), "bytes": None}
    row["mask"] = str(resolve_in_root(root, record.mask)) if record.mask else None
    row["quadruples"] = [{**q.to_dict(), "box": q.box} for q in record.quadruples]
    row["boxes"] = record.boxes or []
    row["meta"] = json.dumps(record.meta, ensure_ascii=False)
    return row


def record_from_row(row: Mapping[str, Any], root: str | os.PathLike) -> Record:
    """The :class:`Record` of a (not yet decoded) dataset row, paths made relative to ``root`` again."""
    base = Path(root).resolve()
    image = row["image"]
    if not isinstance(image, Mapping) or not image.get("path"):
        raise ValueError(
            f"record {row.get('id')!r}: the image is decoded or has no path; use the undecoded dataset"
        )

    def relative(path: str) -> str:
        return Path(path).resolve().relative_to(base).as_posix()

    fields = {**row, "image": relative(image["path"]), "meta": json.loads(row.get("meta") or "{}")}
    fields["mask"] = relative(row["mask"]) if row.get("mask") else None
    fields["quadruples"] = [
        {k: v for k, v in q.items() if v is not None} for q in row.get("quadruples") or []
    ]
    return Record.from_dict(fields)


def records_to_dataset(records: Iterable[Record], root: str | os.PathLike):
    """A ``datasets.Dataset`` of records whose image paths are made absolute under ``root``."""
    from datasets import Dataset

    root = Path(root)
    return Dataset.from_list([_row(r, root) for r in records], features=record_features())


def load_records_dataset(path: str | os.PathLike, root: str | os.PathLike | None = None):
    """Read a record file into a ``datasets.Dataset`` (images not decoded yet)."""
    return records_to_dataset(read_records(path), root if root is not None else default_root(path))


def _generate_rows(shards: list[tuple[str, str, int, int]]) -> Iterator[dict[str, Any]]:
    # Shard i of n holds every n-th record (by position in the file): one pass per shard, no index.
    for path, root, index, num_shards in shards:
        for position, (_, record) in enumerate(iter_records(path)):
            if position % num_shards == index:
                yield _row(record, Path(root))


def stream_records_dataset(
    path: str | os.PathLike, root: str | os.PathLike | None = None, *, num_shards: int = 1
):
    """Stream a record file as a ``datasets.IterableDataset`` split into ``num_shards`` data sources.

    With several shards, ``IterableDataset.shard``, ``datasets.distributed.split_dataset_by_node``
    and DataLoader workers each read a disjoint subset of the records.
    """
    from datasets import IterableDataset

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    root = str(Path(root) if root is not None else default_root(path))
    shards = [(str(path), root, i, num_shards) for i in range(num_shards)]
    return IterableDataset.from_generator(
        _generate_rows, features=record_features(), gen_kwargs={"shards": shards}
    )


def _decode_cell(cell: Any):
    from forenx.images import load_image

    if isinstance(cell, dict):
        return load_image(cell["bytes"] if cell.get("bytes") else cell["path"])
    return load_image(cell)


def _decode_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    batch["image"] = [_decode_cell(cell) for cell in batch["image"]]
    return batch


def _decode_example(example: dict[str, Any]) -> dict[str, Any]:
    example["image"] = _decode_cell(example["image"])
    return example


def decode_images(dataset):
    """Decode the ``image`` column with :func:`forenx.images.load_image`, lazily.

    A ``Dataset`` gets a transform (decoded on access); an ``IterableDataset`` a map (decoded while
    streaming). Either way the result yields RGB ``PIL.Image`` objects.
    """
    from datasets import IterableDataset

    if isinstance(dataset, IterableDataset):
        return dataset.map(_decode_example)
    return dataset.with_transform(_decode_batch)
