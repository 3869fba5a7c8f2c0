"""A sweep's cells' time against an earlier run of the same cells (issue 19): per stream and method, the sum of the
cells' `wall_s` in two results folders, their ratio, and how far the training differs: the largest difference of any
task's first, last or mean training loss between the two records of a cell (0: the same bits).

Cells are matched by stream, order, method, options and seed, so an earlier code's records (whose configuration
hash may differ by keys added since) meet today's. Only cells present in both folders count.

    .venv/bin/python -m benchmarks.sweep_time results/v1 runs/v1-cost    # prints a markdown table
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from clgraft.results.leaderboard import load_records


def _key(record: dict) -> tuple:
    c = record["config"]
    options = json.dumps(c.get("method_options") or {}, sort_keys=True)
    return c["stream"], c.get("order"), c["method"], options, c["seed"]


def cells(results: Path) -> dict[tuple, dict]:
    """The finished records under RESULTS/runs by cell key."""
    return {_key(r): r for r in load_records(results)}


def _loss_difference(before: dict, after: dict) -> float:
    """The largest |difference| of the tasks' first, last and mean training losses of two records of one cell."""
    pairs = zip(before["train_loss"], after["train_loss"], strict=True)
    return max(abs(b[k] - a[k]) for b, a in pairs for k in ("first", "last", "mean"))


def compare(before: dict[tuple, dict], after: dict[tuple, dict]) -> list[dict]:
    """One row per (stream, method, options): cells, seconds before and after, ratio, largest training-loss
    difference."""
    groups: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for key in sorted(before.keys() & after.keys(), key=str):
        groups[key[:4]].append((before[key], after[key]))
    rows = []
    for (stream, order, method, options), pairs in groups.items():
        old, new = sum(b["wall_s"] for b, _ in pairs), sum(a["wall_s"] for _, a in pairs)
        drift = max(_loss_difference(b, a) for b, a in pairs)
        label = method if options == "{}" else f"{method} {options}"
        rows.append(
            {
                "stream": f"{stream}/{order}",
                "method": label,
                "cells": len(pairs),
                "before_s": old,
                "after_s": new,
                "ratio": new / old,
                "loss_difference": drift,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of the rows and their total."""
    header = "| stream | method | cells | before s | after s | after/before | max \\|Δ training loss\\| |"
    lines = [header, "|---" * 7 + "|"]
    for r in rows:
        lines.append(
            f"| {r['stream']} | {r['method']} | {r['cells']} | {r['before_s']:,.0f} | {r['after_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['loss_difference']:.1e} |"
        )
    old, new = sum(r["before_s"] for r in rows), sum(r["after_s"] for r in rows)
    n, drift = sum(r["cells"] for r in rows), max(r["loss_difference"] for r in rows)
    lines.append(f"| all | | {n} | {old:,.0f} | {new:,.0f} | {new / old:.2f} | {drift:.1e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="results folder of the earlier run (its runs/*/run.json)")
    parser.add_argument("after", type=Path, help="results folder of the later run")
    args = parser.parse_args()
    print(table(compare(cells(args.before), cells(args.after))))


if __name__ == "__main__":
    main()
