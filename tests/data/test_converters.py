"""Each converter on its fixture in the dataset's own on-disk format; skipped entries say why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from forenx.data.converters import CONVERTERS, convert
from forenx.data.converters.base import load_json
from forenx.data.io import read_records, write_records
from forenx.data.validate import validate_records
from forenx.schema import parse_severity, severity_from_realism


def _round_trip(result, tmp_path, root=None, check_images=False):
    """Records survive JSONL and pass validation (paths in the root, fields, severities)."""
    write_records(result.records, tmp_path / "out.jsonl")
    back = read_records(tmp_path / "out.jsonl")
    assert [r.to_dict() for r in back] == [r.to_dict() for r in result.records]
    report = validate_records(tmp_path / "out.jsonl", root or tmp_path, check_images=check_images)
    assert report.ok, report.message()
    return back


def test_every_converter_has_a_card(fixtures):
    cards = fixtures.parent.parent / "data_cards"
    for converter in CONVERTERS.values():
        text = (cards / converter.card).read_text()
        assert text.startswith("---\n") and "license" in text.split("---")[1]


def test_anomreason_ground_truth_converts_completely(fixtures, tmp_path):
    path = fixtures / "anomreason" / "gt_data_test_case.json"
    source = json.loads(path.read_text())
    result = convert("anomreason", path, image_prefix="anomreason/images")
    assert result.skipped == []
    records = _round_trip(result, tmp_path)
    assert len(records) == 100 and {r.label for r in records} == {"fake"}
    assert sum(len(r.quadruples) for r in records) == 610
    for record in records:
        file_name = record.meta["anomreason"]["file_name"]
        assert record.image == f"anomreason/images/{file_name}"
        anomalies = source[file_name]
        assert [q.name for q in record.quadruples] == [a["Name"] for a in anomalies]
        assert [q.phenomenon for q in record.quadruples] == [a["Observed Phenomenon"] for a in anomalies]
        assert [q.reasoning for q in record.quadruples] == [a["Reasoning"] for a in anomalies]
        assert [q.severity for q in record.quadruples] == [
            severity_from_realism(parse_severity(a["Severity Score"])) for a in anomalies
        ]
        assert record.meta["anomreason"]["severity_scores"] == [a["Severity Score"] for a in anomalies]
    by_id = {r.id: r for r in records}
    first = by_id["2025_04_24_02_41_23_1353128135096406128_sdv35"]
    assert first.generator == "sdv35" and first.quadruples[0].severity == 75  # "25/100 (...)" -> 75
    assert by_id["2025_04_23_13_05_07_1258046342949900422_flux"].generator == "flux"
    assert by_id["2025_04_18_02_29_58_1260626514005725187_1_1"].generator is None


def test_anomreason_predictions_and_bad_anomalies(fixtures, tmp_path):
    result = convert("anomreason", fixtures / "anomreason" / "pre_data_test_case.json")
    assert len(result.records) == 100 and sum(len(r.quadruples) for r in result.records) == 551
    bad = {
        "x_flux.jpg": [
            {"Name": "A", "Observed Phenomenon": "p", "Reasoning": "r", "Severity Score": "bad"},
            {"Name": "B", "Observed Phenomenon": "p", "Reasoning": "r", "Severity Score": "40/100 (x)."},
            {"Name": "", "Observed Phenomenon": "p", "Reasoning": "r", "Severity Score": "40/100"},
        ],
        "y.jpg": "not a list",
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = convert("anomreason", tmp_path / "bad.json")
    assert [r.id for r in result.records] == ["x_flux"]
    assert [q.name for q in result.records[0].quadruples] == ["B"]
    assert [str(s) for s in result.skipped] == [
        "x_flux.jpg anomaly 0: no number in 'Severity Score' 'bad'; anomaly left out",
        "x_flux.jpg anomaly 2: empty 'Name'; anomaly left out",
        "y.jpg: expected a list of anomalies, got str",
    ]


def test_loki_reads_all_three_files_including_utf16(fixtures, tmp_path):
    folder = fixtures / "formats" / "loki"
    assert (folder / "open_ended_vqa.json").read_bytes()[:2] == b"\xff\xfe"  # kept exactly as published
    open_ended = load_json(folder / "open_ended_vqa.json")
    result = convert("loki", folder)
    records = {r.image: r for r in _round_trip(result, tmp_path)}
    true_false = json.loads((folder / "true_or_false.json").read_text())
    for item in true_false:
        truth = item["question_type"].split("_")[3]  # image_tf_image_{real,fake}_ask_...
        assert records[item["image_path"]].label == truth
    for item in json.loads((folder / "multi_choice.json").read_text()):
        first, second = (records[p].label for p in item["image_path"])
        wanted = "fake" if "fake_from_real" in item["question_type"] else "real"
        assert (first if item["answer"] == "A" else second) == wanted and first != second
    for item in open_ended:
        record = records[item["image_path"]]
        assert record.label == "fake"
        regional = item["problems"]["regional"]
        assert [q.phenomenon for q in record.quadruples[: len(regional)]] == [r["desc"] for r in regional]
        x, y, w, h = regional[0]["region"]
        assert record.quadruples[0].box == pytest.approx([x, y, x + w, y + h])
    assert len(records) == 10
    # the one empty global description of the excerpt is reported, not silently dropped
    assert [str(s) for s in result.skipped] == [
        "open_ended_vqa.json[0] global 0: empty description; anomaly left out"
    ]


def test_loki_conflicting_labels_are_skipped(fixtures, tmp_path):
    items = json.loads((fixtures / "formats" / "loki" / "true_or_false.json").read_text())[:2]
    items[1]["question_type"] = items[1]["question_type"].replace("image_real", "image_fake")
    (tmp_path / "tf.json").write_text(json.dumps(items))
    result = convert("loki", tmp_path / "tf.json")
    assert result.records == [] and "conflicting labels" in result.skipped[0].reason


def test_synthscars_polygons_become_boxes_and_masks(fixtures, tmp_path):
    path = fixtures / "formats" / "synthscars" / "legion_prerelease_val_first5.json"
    source = json.loads(path.read_text())
    result = convert("synthscars", path)
    records = _round_trip(result, tmp_path)
    assert [r.id for r in records] == [next(iter(e)) for e in source] and result.skipped == []
    first = records[0]
    annotation = source[0]["1172"]
    assert first.image == "val/images/ef11643f-a1d7-4dd3-8ecd-7bdf736b7464.png" and first.split == "val"
    assert first.label == "fake" and len(first.quadruples) == len(annotation["refs"]) == 4
    polygon = annotation["refs"][0]["segmentation"][0]
    assert first.quadruples[0].name == "Man's right ear"
    assert first.quadruples[0].phenomenon == annotation["refs"][0]["explanation"]
    assert first.quadruples[0].box == [
        min(polygon[0::2]),
        min(polygon[1::2]),
        max(polygon[0::2]),
        max(polygon[1::2]),
    ]
    assert first.boxes == [q.box for q in first.quadruples]
    # with the image present the union of the polygons is written as the mask
    (tmp_path / "val" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(tmp_path / first.image)
    with_mask = convert("synthscars", path, root=tmp_path, mask_dir="masks/synthscars")
    assert [r.id for r in with_mask.records] == ["1172"]  # the other images are not under the root
    record = with_mask.records[0]
    assert record.mask == "masks/synthscars/1172.png"
    mask = np.asarray(Image.open(tmp_path / record.mask))
    assert mask.shape == (400, 400) and set(np.unique(mask)) == {0, 255}
    x0, y0, x1, y1 = (round(v) for v in first.quadruples[1].box)  # inside the eyes' polygon
    assert mask[(y0 + y1) // 2, (x0 + x1) // 2] == 255 and mask[5, 5] == 0
    assert [s.where for s in with_mask.skipped] == [
        *(f"entry {i} (id {k}) mask" for i, k in enumerate(["566", "2127", "1725", "198"], start=1)),
        "566",
        "2127",
        "1725",
        "198",
    ]


def test_fakeclue_label_is_inverted_and_contradictions_skipped(fixtures, tmp_path):
    path = fixtures / "formats" / "fakeclue" / "fakeclue_test_sample.json"
    source = json.loads(path.read_text())
    records = _round_trip(convert("fakeclue", path), tmp_path)
    assert [r.label for r in records] == ["real" if s["label"] == 1 else "fake" for s in source]
    assert [r.summary for r in records] == [s["conversations"][1]["value"] for s in source]
    assert (
        records[0].image == "ff++/fake/Deepfakes/000_003/0012.png" and records[0].meta["cate"] == "deepfake"
    )
    source[0]["label"] = 1  # says real, but the answer says fake
    source[1]["label"] = 2
    source[2]["conversations"][1]["value"] = "   "  # an empty answer
    (tmp_path / "bad.json").write_text(json.dumps(source))
    result = convert("fakeclue", tmp_path / "bad.json")
    assert len(result.records) == len(source) - 3
    assert [s.reason for s in result.skipped] == [
        "label 1 means real but the answer says fake",
        "label 2 is not 0 (fake) or 1 (real)",
        "no gpt answer in 'conversations'",
    ]


def test_mmfr_training_and_evaluation_files(fixtures, tmp_path):
    folder = fixtures / "formats" / "mmfr"
    training = _round_trip(convert("mmfr", folder / "forgery_reasoning_cot_sample.json"), tmp_path)
    assert [(r.label, r.image) for r in training] == [
        ("fake", "train/1_fake/sd_v1.5_000123.png"),
        ("real", "train/0_real/coco_000000391895.jpg"),
    ]
    assert (
        training[0].summary.startswith("The lighting on the woman's face") and "<" not in training[0].summary
    )
    source = json.loads((folder / "midjourney_reasoning.json").read_text())
    evaluation = convert("mmfr", folder / "midjourney_reasoning.json").records
    assert [(r.label, r.generator) for r in evaluation] == [("fake", "midjourney")] * 2 + [
        ("real", "midjourney")
    ]
    first = source["midjourney/1_fake/mj_000045.png"]
    assert [q.name for q in evaluation[0].quadruples] == sorted(k for k, v in first.items() if v)
    assert evaluation[0].summary == " ".join(first[k] for k in sorted(first) if first[k] is not None)
    assert evaluation[2].quadruples == [] and evaluation[2].summary.startswith("All shadows")


def test_sid_set_folder_layout(fixtures, tmp_path):
    root = fixtures / "formats" / "sid_set" / "SID_Set"
    result = convert("sid_set", root)
    records = {
        r.meta["sid_class"] + ":" + r.id.rsplit("__", 1)[1]: r
        for r in _round_trip(result, tmp_path, root=root, check_images=True)
    }
    real = records["real:real_00017"]
    assert real.label == "real" and real.quadruples == [] and real.split == "validation"
    synthetic = records["full_synthetic:full_synthetic_14576"]
    assert synthetic.label == "fake" and synthetic.generator is None
    assert [q.name for q in synthetic.quadruples][:3] == ["lighting", "edges", "resolution"]
    assert (
        len(synthetic.quadruples) == 11
        and synthetic.summary == "The given image is synthetic based on above analysis."
    )
    tampered = records["tampered:00759_sd_tampered"]
    assert tampered.generator == "sd" and tampered.mask == "validation/masks/00759_sd_tampered_mask.png"
    assert records["tampered:04280_flux_part2_tampered"].mask is None
    assert [str(s) for s in result.skipped] == [
        (
            "validation/tampered/04280_flux_part2_tampered.png mask: "
            "validation/masks/04280_flux_part2_tampered_mask.png not found; record kept without a mask"
        )
    ]


def test_root_check_skips_records_whose_image_is_missing(fixtures, tmp_path):
    result = convert(
        "fakeclue", fixtures / "formats" / "fakeclue" / "fakeclue_test_sample.json", root=tmp_path
    )
    assert result.records == [] and len(result.skipped) == 4
    assert all("not found under" in s.reason for s in result.skipped)
    with pytest.raises(KeyError, match="choose one of"):
        convert("nope", tmp_path)


def test_mmtd_set_label_comes_from_the_answer(fixtures, tmp_path):
    path = fixtures / "formats" / "mmtd_set" / "mmtd_set_34k_4records.json"
    source = json.loads(path.read_text())
    records = _round_trip(convert("mmtd_set", path, image_prefix="MMTD-Set"), tmp_path)
    assert [(r.id, r.label) for r in records] == [
        ("Tp_S_CNN_S_N_ind00095_ind00095_10657", "fake"),
        ("Tp_D_NRN_M_N_nat00091_nat00097_11099", "fake"),
        ("F_FAP0_00908-2", "fake"),
        ("Au_nat_30106", "real"),
    ]
    assert [r.meta["domain"] for r in records] == ["Photoshop", "Photoshop", "DeepFake", "Photoshop"]
    assert records[3].image == "MMTD-Set/ps/CASIA2_Au/image/Au_nat_30106.jpg"
    assert [r.summary for r in records] == [s["conversations"][1]["value"] for s in source]
    source[0]["conversations"][1]["value"] = "I cannot tell."
    (tmp_path / "bad.json").write_text(json.dumps(source))
    result = convert("mmtd_set", tmp_path / "bad.json")
    assert len(result.records) == 3 and "neither 'has been tampered'" in result.skipped[0].reason


def test_so_fake_reads_class_names_not_ids(fixtures, tmp_path):
    folder = fixtures / "formats" / "so_fake"
    rows = (folder / "so_fake_ood_v1_rows.csv").read_text().splitlines()[1:]
    truth = {line.split(",")[2]: line.split(",")[1] for line in rows}  # filename -> class name shown
    converted = {}
    for version in ("v1", "v2"):
        root = tmp_path / version
        result = convert("so_fake", folder / f"so_fake_ood_{version}.parquet", root=root)
        assert result.skipped == []
        records = _round_trip(result, root, root=root, check_images=True)
        converted[version] = {r.image.rsplit("/", 1)[1]: r for r in records}
        assert {name: r.meta["class"] for name, r in converted[version].items()} == truth
        for record in records:
            assert record.label == ("real" if record.meta["class"] == "real" else "fake")
            assert (record.mask is not None) == (record.meta["class"] == "tampered")
    # the same file names get the same labels although the ids differ between versions
    v1, v2 = converted["v1"], converted["v2"]
    assert v1["reddit_18500.jpg"].meta["label_id"] == 1 and v2["reddit_18500.jpg"].meta["label_id"] == 0
    assert {k: r.label for k, r in v1.items()} == {k: r.label for k, r in v2.items()}
    assert v2["06068_sd_tampered.png"].generator == "sd" and v1["06068_sd_tampered.png"].generator is None
    # the image bytes are extracted untouched
    extracted = (tmp_path / "v1" / v1["reddit_18500.jpg"].image).read_bytes()
    assert extracted[:3] == b"\xff\xd8\xff"  # still the JPEG the parquet holds
    with pytest.raises(ValueError, match="--root"):
        convert("so_fake", folder / "so_fake_ood_v1.parquet")


def test_so_fake_without_class_names_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"label": [0], "image": [{"bytes": b"x", "path": "a.png"}]}), tmp_path / "x.parquet"
    )
    result = convert("so_fake", tmp_path / "x.parquet", root=tmp_path)
    assert result.records == [] and "cannot tell which label id means what" in result.skipped[0].reason


def test_sid_set_parquet_uses_its_class_names(fixtures, tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    folder = fixtures / "formats" / "sid_set" / "SID_Set" / "validation"
    png = (folder / "tampered" / "00759_sd_tampered.png").read_bytes()
    mask = (folder / "masks" / "00759_sd_tampered_mask.png").read_bytes()
    features = Features(
        {
            "img_id": Value("string"),
            "image": ImageFeature(),
            "mask": ImageFeature(),
            "width": Value("int32"),
            "height": Value("int32"),
            "label": ClassLabel(names=["real", "full_synthetic", "tampered"]),
        }
    )
    rows = {
        "img_id": ["real_00017", "full_synthetic_14576", "tampered_00759"],
        "image": [
            {"bytes": (folder / "real" / "real_00017.png").read_bytes(), "path": None},
            {"bytes": (folder / "full_synthetic" / "full_synthetic_14576.png").read_bytes(), "path": None},
            {"bytes": png, "path": None},
        ],
        "mask": [None, None, {"bytes": mask, "path": None}],
        "width": [16] * 3,
        "height": [16] * 3,
        "label": [0, 1, 2],
    }
    (tmp_path / "hub" / "data").mkdir(parents=True)
    Dataset.from_dict(rows, features=features).to_parquet(
        tmp_path / "hub" / "data" / "validation-00000-of-00001.parquet"
    )
    root = tmp_path / "root"
    result = convert("sid_set", tmp_path / "hub", root=root)
    records = _round_trip(result, root, root=root, check_images=True)
    assert [(r.label, r.meta["class"], r.split) for r in records] == [
        ("real", "real", "validation"),
        ("fake", "full_synthetic", "validation"),
        ("fake", "tampered", "validation"),
    ]
    assert records[2].image == "sid_set/validation/tampered/tampered_00759.png"
    assert (root / records[2].image).read_bytes() == png and (root / records[2].mask).read_bytes() == mask
    assert records[0].meta["width"] == 16 and result.skipped == []
    with pytest.raises(ValueError, match="--root"):
        convert("sid_set", tmp_path / "hub")


def test_anomreason_predictions_are_model_quadruples(fixtures):
    from forenx.data.converters.anomreason import read_reports

    gt = convert("anomreason", fixtures / "anomreason" / "gt_data_test_case.json").records
    pre = convert("anomreason", fixtures / "anomreason" / "pre_data_test_case.json").records
    assert {q.source for r in gt for q in r.quadruples} == {"annotation"}
    assert {q.source for r in pre for q in r.quadruples} == {"model"}
    assert (
        pre[0].meta["anomreason"]["kind"] == "predictions"
        and gt[0].meta["anomreason"]["kind"] == "ground_truth"
    )
    reports = read_reports(fixtures / "anomreason" / "pre_data_test_case.json")
    source = json.loads((fixtures / "anomreason" / "pre_data_test_case.json").read_text())
    assert list(reports) == list(source)
    assert all([q.name for q in reports[k].anomalies] == [a["Name"] for a in source[k]] for k in source)
