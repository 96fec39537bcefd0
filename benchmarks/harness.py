"""Timing harness: interleaved repeats, medians, ratios, JSON and a markdown table.

Each ``bench_*.py`` module in this folder defines ``run(quick: bool) -> list[dict]``,
building its rows with :func:`compare`. ``python -m benchmarks [names...]`` runs them
and writes ``benchmarks/results.json`` and ``benchmarks/results.md``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

Timed = Callable[[], object]


def compare(name: str, ours: Timed, limit: Timed | None = None, reference: Timed | None = None, repeats: int = 5, note: str = "") -> dict:
    """Time ``ours`` against the compute ``limit`` and the ``reference`` call, interleaved.

    Each candidate runs once untimed (tracing, caches), then the candidates take turns
    ``repeats`` times so that load on the machine hits them alike. Seconds are medians.
    """
    candidates = {"ours": ours, "limit": limit, "reference": reference}
    candidates = {k: v for k, v in candidates.items() if v is not None}
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for fn in candidates.values():
        fn()
    for _ in range(repeats):
        for key, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    row = {"benchmark": name, "repeats": repeats, "note": note}
    for key, times in samples.items():
        row[f"{key}_s"] = statistics.median(times)
    if "limit_s" in row:
        row["ours_over_limit"] = row["ours_s"] / row["limit_s"]
    if "reference_s" in row:
        row["speedup_vs_reference"] = row["reference_s"] / row["ours_s"]
    return row


DETAILS = {  # extra keys some benchmarks report, shown in the table's last column
    "samples_per_s": "{:.0f} samples/s",
    "peak_rss_mb": "peak RSS {:.0f} MB",
    "median_ms": "median {:.1f} ms",
    "p95_ms": "p95 {:.1f} ms",
    "share_of_digits_epoch": "{:.0%} of a digits training epoch",
    "logging_cpu_share": "logging thread: {:.1%} of the explain time in CPU",
    "cell_kb": "{:.1f} KB per cell",
    "samples_kb": "samples summary {:.0f} KB once",
    "rss_mb": "TensorBoard RSS {:.0f} MB",
    "log_mb": "logs {:.0f} MB",
    "load_s": "loaded in {:.0f} s",
}


def markdown_table(rows: list[dict]) -> str:
    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "–"

    lines = [
        "| benchmark | ours (s) | compute limit (s) | ours / limit | reference (s) | speed-up vs reference | details |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        speedup = f"{row['speedup_vs_reference']:.1f}×" if "speedup_vs_reference" in row else "–"
        details = ", ".join(fmt.format(row[key]) for key, fmt in DETAILS.items() if key in row)
        lines.append(
            f"| {row['benchmark']} | {cell(row, 'ours_s', '.4f')} | {cell(row, 'limit_s', '.4f')} | "
            f"{cell(row, 'ours_over_limit', '.2f')} | {cell(row, 'reference_s', '.3f')} | {speedup} | {details} |"
        )
    return "\n".join(lines)
