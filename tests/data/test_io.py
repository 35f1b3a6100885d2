"""Record files: JSONL round trip, the data-root guard, and datasets (map-style, streaming, sharded)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node
from PIL import Image

from forenx.data.io import (
    PathOutsideRootError,
    RecordFileError,
    decode_images,
    iter_json_lines,
    load_records_dataset,
    read_records,
    record_from_row,
    records_to_dataset,
    resolve_in_root,
    stream_records_dataset,
    write_records,
)
from forenx.data.records import Record
from forenx.schema import Quadruple


def _records(n: int = 6) -> list[Record]:
    return [
        Record(
            id=f"r{i}",
            image=f"img/{i}.png",
            label="fake" if i % 2 else "real",
            generator="flux",
            source="test",
            split="train",
            quadruples=[
                Quadruple(
                    "Seam",
                    f"edge {i}",
                    "splices leave edges",
                    10 * i,
                    source="annotation",
                    box=[0.0, 0.0, 4.0, 4.0],
                )
            ]
            if i % 2
            else [],
            meta={"note": "é", "n": i},
        )
        for i in range(n)
    ]


@pytest.fixture
def data_root(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(6):
        # Orientation 6 (rotate 90°): load_image must apply it, so a 4x8 file decodes as 8x4.
        image = Image.fromarray(np.full((8, 4, 3), 40 * i, np.uint8))
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(tmp_path / "img" / f"{i}.png", exif=exif)
    write_records(_records(), tmp_path / "data.jsonl")
    return tmp_path


def test_jsonl_round_trip_keeps_every_field(tmp_path):
    records = _records()
    assert write_records(records, tmp_path / "out" / "data.jsonl") == 6
    back = read_records(tmp_path / "out" / "data.jsonl")
    assert [r.to_dict() for r in back] == [r.to_dict() for r in records]
    assert not (tmp_path / "out" / "data.jsonl.partial").exists()


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_records(1)[0].to_dict()) + "\n\n{not json\n")
    assert [(item.line_no, item.error is None) for item in iter_json_lines(path)] == [(1, True), (3, False)]
    with pytest.raises(RecordFileError, match=r"data.jsonl:3: invalid JSON"):
        read_records(path)
    path.write_text('{"id": "x", "image": "a.png"}\n')
    with pytest.raises(RecordFileError, match=r"data.jsonl:1: missing field 'label'"):
        read_records(path)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_records(1)[0].to_dict()).encode() + b"\n\xff\xfe\n")
    items = list(iter_json_lines(path))
    assert items[0].value["id"] == "r0" and items[1].error.startswith("not UTF-8 text")


def test_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "img" / "link.png")
    assert resolve_in_root(root, "img/a.png") == (root / "img" / "a.png").resolve()
    assert resolve_in_root(root, "img/../img/a.png") == (root / "img" / "a.png").resolve()
    for bad in ("../secret.png", "img/../../secret.png", str(tmp_path / "secret.png"), "img/link.png", ""):
        with pytest.raises(PathOutsideRootError):
            resolve_in_root(root, bad)


def test_dataset_has_image_feature_and_decodes_with_load_image(data_root):
    dataset = load_records_dataset(data_root / "data.jsonl")
    assert dataset.num_rows == 6
    assert type(dataset.features["image"]).__name__ == "Image"
    row = dataset[1]
    assert row["image"]["path"] == str(data_root / "img" / "1.png")
    assert row["quadruples"][0]["severity"] == 10 and row["quadruples"][0]["box"] == [0.0, 0.0, 4.0, 4.0]
    assert json.loads(row["meta"]) == {"note": "é", "n": 1}
    # a row maps back to the very record it came from
    assert [record_from_row(r, data_root).to_dict() for r in dataset] == [r.to_dict() for r in _records()]
    decoded = decode_images(dataset)[1]["image"]
    assert decoded.mode == "RGB" and decoded.size == (8, 4)  # EXIF rotation applied by load_image


def test_dataset_refuses_a_record_outside_the_root(tmp_path):
    with pytest.raises(PathOutsideRootError):
        records_to_dataset([Record(id="x", image="../x.png", label="real")], tmp_path)


def test_map_style_sharding_covers_every_record_once(data_root):
    dataset = load_records_dataset(data_root / "data.jsonl")
    shards = [list(dataset.shard(num_shards=3, index=i)["id"]) for i in range(3)]
    assert sorted(i for shard in shards for i in shard) == [f"r{i}" for i in range(6)] and all(
        len(s) == 2 for s in shards
    )


def test_streaming_shards_are_disjoint_and_complete(data_root):
    stream = stream_records_dataset(data_root / "data.jsonl", num_shards=2)
    assert isinstance(stream, IterableDataset) and stream.num_shards == 2
    everything = [row["id"] for row in stream]
    assert sorted(everything) == [f"r{i}" for i in range(6)]
    rank0 = [row["id"] for row in split_dataset_by_node(stream, rank=0, world_size=2)]
    rank1 = [row["id"] for row in split_dataset_by_node(stream, rank=1, world_size=2)]
    assert rank0 == ["r0", "r2", "r4"] and rank1 == ["r1", "r3", "r5"]
    assert [row["id"] for row in stream.shard(num_shards=2, index=1)] == rank1
    first = next(iter(decode_images(stream)))
    assert first["id"] == "r0" and first["image"].size == (8, 4) and first["image"].mode == "RGB"
