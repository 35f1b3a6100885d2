"""`compute_stats` counts on the real AnomReason test case and on a hand-made mix."""

from __future__ import annotations

import json

from rich.console import Console

from forenx.data.converters import convert
from forenx.data.records import Record
from forenx.data.stats import SEVERITY_BINS, compute_stats, stats_tables
from forenx.schema import Quadruple, parse_severity, severity_from_realism


def test_anomreason_counts_match_the_source_file(fixtures):
    path = fixtures / "anomreason" / "gt_data_test_case.json"
    source = json.loads(path.read_text())
    stats = compute_stats(convert("anomreason", path).records)
    assert stats["records"] == 100 and stats["labels"] == {"fake": 100}
    assert stats["anomalies"] == sum(len(v) for v in source.values()) == 610
    expected_bins = {b: 0 for b in SEVERITY_BINS}
    for anomalies in source.values():
        for anomaly in anomalies:
            severity = severity_from_realism(parse_severity(anomaly["Severity Score"]))
            expected_bins[SEVERITY_BINS[min(severity // 10, 9)]] += 1
    assert stats["severity_histogram"] == expected_bins
    assert stats["generators"] == {"(none)": 56, "flux": 25, "sdv35": 19}
    assert sum(stats["anomalies_per_image"].values()) == 100
    assert stats["anomalies_per_image"]["6"] == sum(len(v) == 6 for v in source.values())


def test_mixed_records_and_tables_render():
    records = [
        Record("a", "a.png", "real", source="x", split="train"),
        Record(
            "b",
            "b.png",
            "fake",
            generator="sd",
            source="x",
            mask="m.png",
            quadruples=[
                Quadruple("A", "p", "r", 0),
                Quadruple("B", "p", "r", 100),
                Quadruple("C", "p", "r", 95),
            ],
        ),
        Record("c", "c.png", "unknown", source="y"),
    ]
    stats = compute_stats(records)
    assert stats["labels"] == {"fake": 1, "real": 1, "unknown": 1}
    assert stats["sources"] == {"x": 2, "y": 1} and stats["with_mask"] == 1
    assert stats["anomalies_per_image"] == {"0": 2, "3": 1}
    assert stats["severity_histogram"]["0-9"] == 1 and stats["severity_histogram"]["90-100"] == 2
    console = Console(record=True, width=100)
    for table in stats_tables(stats):
        console.print(table)
    text = console.export_text()
    assert "Severity histogram (3 anomalies)" in text and "unknown" in text and "33.3%" in text
