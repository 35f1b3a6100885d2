"""What is in a record file: counts by label, source, generator, anomalies per image, severities.

>>> from forenx.data.records import Record
>>> from forenx.schema import Quadruple
>>> stats = compute_stats([Record("a", "a.png", "fake", generator="flux",
...                               quadruples=[Quadruple("Seam", "edge", "splice", 72)]),
...                        Record("b", "b.png", "real")])
>>> stats["labels"], stats["anomalies_per_image"], stats["severity_histogram"]["70-79"]
({'fake': 1, 'real': 1}, {'0': 1, '1': 1}, 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from forenx.data.records import Record

__all__ = ["SEVERITY_BINS", "compute_stats", "stats_tables"]

#: Severity histogram bins (0..100 in tens; 100 shares the last bin).
SEVERITY_BINS = [f"{lo}-{lo + 9}" if lo < 90 else "90-100" for lo in range(0, 100, 10)]

_NONE = "(none)"


def _sorted_counts(counter: Counter) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def compute_stats(records: Iterable[Record]) -> dict[str, Any]:
    """Counts over records, as a JSON-ready dict (the ``--json`` output of ``forenx data stats``)."""
    labels, sources, generators, splits = Counter(), Counter(), Counter(), Counter()
    per_image, severities = Counter(), Counter()
    n_records = n_anomalies = n_masks = 0
    for record in records:
        n_records += 1
        labels[record.label] += 1
        sources[record.source or _NONE] += 1
        generators[record.generator or _NONE] += 1
        splits[record.split or _NONE] += 1
        per_image[len(record.quadruples)] += 1
        n_anomalies += len(record.quadruples)
        n_masks += record.mask is not None
        for quadruple in record.quadruples:
            index = min(max(int(quadruple.severity), 0), 100) // 10
            severities[SEVERITY_BINS[min(index, 9)]] += 1
    return {
        "records": n_records,
        "anomalies": n_anomalies,
        "with_mask": n_masks,
        "labels": _sorted_counts(labels),
        "sources": _sorted_counts(sources),
        "generators": _sorted_counts(generators),
        "splits": _sorted_counts(splits),
        "anomalies_per_image": {str(k): per_image[k] for k in sorted(per_image)},
        "severity_histogram": {b: severities[b] for b in SEVERITY_BINS},
    }


def stats_tables(stats: dict[str, Any]) -> list:
    """Rich tables for :func:`compute_stats`' output, one per count."""
    from rich.table import Table

    total = max(stats["records"], 1)
    tables = []
    for key, title, column in (
        ("labels", "Labels", "label"),
        ("sources", "Sources", "source"),
        ("generators", "Generators", "generator"),
        ("splits", "Splits", "split"),
        ("anomalies_per_image", "Anomalies per image", "anomalies"),
    ):
        table = Table(title=title)
        table.add_column(column)
        table.add_column("images", justify="right")
        table.add_column("share", justify="right")
        for name, count in stats[key].items():
            table.add_row(name, str(count), f"{count / total:.1%}")
        tables.append(table)
    histogram = Table(title=f"Severity histogram ({stats['anomalies']} anomalies)")
    histogram.add_column("severity")
    histogram.add_column("anomalies", justify="right")
    histogram.add_column("")
    peak = max(stats["severity_histogram"].values(), default=0) or 1
    for name, count in stats["severity_histogram"].items():
        histogram.add_row(name, str(count), "#" * round(30 * count / peak))
    tables.append(histogram)
    return tables
