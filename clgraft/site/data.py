"""What the site shows, read off the leaderboard's frame (`leaderboard.summarize`) and the run records: each cell's
numbers parsed back from the text the leaderboard prints, so that the site draws exactly the numbers the table says
and never aggregates a second time; the records behind each row; and what docs/methods.md says of each method."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clgraft.io.records import config_hash
from clgraft.methods import get_method
from clgraft.results.leaderboard import BASELINE, METRICS, PAIRED, row_id, setting
from clgraft.results.report import bar_labels

PAIRED_COLUMNS = tuple(f"{m}_vs_{BASELINE}" for m in PAIRED)
NOT_FORGETTING = ("bwt", "forgetting", f"forgetting_vs_{BASELINE}")
"""Cells that say nothing about forgetting for a method whose R rows are transfer (Method.r_rows_are_transfer)."""
BY_CONSTRUCTION = " (by construction)"
_NUMBER = r"[+-]?\d+(?:\.\d+)?"
_INTERVAL = re.compile(rf"({_NUMBER}) ± ({_NUMBER}) \[({_NUMBER}), ({_NUMBER})\]")
_PAIRED = re.compile(rf"({_NUMBER}) \[({_NUMBER}), ({_NUMBER})\](?: p[=<]({_NUMBER}))? \(n=(\d+)\)")
_ONE_SEED_PAIR = re.compile(rf"({_NUMBER}) \(1 seed\)")


@dataclass(frozen=True)
class Cell:
    """One cell of the leaderboard as printed (`text`) and as numbers: `value` (a mean, or a mean paired
    difference), its 95% interval (`low`, `high`), the std over seeds and the paired test's p where the cell has
    them. `kind` says what the numbers are: interval (n ≥ 2 seeds), one-seed (a value without an interval),
    by-construction (fixed by the method, not measured), transfer (a BWT or forgetting computed from R rows that
    measure transfer: not drawn, not sorted) or missing (n/a, or no paired naive row)."""

    text: str
    kind: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    std: float | None = None
    p: float | None = None


def metric_cell(text: str) -> Cell:
    """A metric cell of the frame: 'mean ± std [low, high]', one seed's value, 'V (by construction)' or 'n/a'."""
    if text.endswith(BY_CONSTRUCTION):
        return Cell(text, "by-construction", float(text.removesuffix(BY_CONSTRUCTION)))
    if match := _INTERVAL.fullmatch(text):
        mean, std, low, high = map(float, match.groups())
        return Cell(text, "interval", mean, low, high, std)
    if re.fullmatch(_NUMBER, text):
        return Cell(text, "one-seed", float(text))
    return Cell(text, "missing")


def paired_cell(text: str) -> Cell:
    """A `*_vs_naive` cell of the frame: 'diff [low, high] p=P (n=N)' (or p<0.001: P is then that bound),
    'diff (1 seed)' or '-'; either of the first two may end in '(by construction)'."""
    kind = "by-construction" if text.endswith(BY_CONSTRUCTION) else ""
    body = text.removesuffix(BY_CONSTRUCTION)
    if match := _PAIRED.fullmatch(body):
        diff, low, high, p, _ = match.groups()
        return Cell(text, kind or "interval", float(diff), float(low), float(high), p=None if p is None else float(p))
    if match := _ONE_SEED_PAIR.fullmatch(body):
        return Cell(text, kind or "one-seed", float(match.group(1)))
    return Cell(text, "missing")


@dataclass(frozen=True)
class MethodDoc:
    """A method's entry in docs/methods.md: the section it is listed in (its family), what clgraft runs, and where
    clgraft departs from the paper (Markdown)."""

    family: str
    what: str
    departures: str


def method_docs(text: str) -> dict[str, MethodDoc]:
    """Each method of docs/methods.md by name, from the tables under its `##` sections: the family is the section's
    title up to its first parenthesis ('Classic continual learning', 'Grafting', ...)."""
    out: dict[str, MethodDoc] = {}
    family, columns = "", []
    for line in text.splitlines():
        if line.startswith("## "):
            family, columns = line[3:].split(" (")[0].strip(), []
        elif line.startswith("| method |"):
            columns = _table_cells(line)
        elif columns and (name := re.match(r"\| `([^`]+)`", line)):
            cells = dict(zip(columns, _table_cells(line), strict=False))
            out[name.group(1)] = MethodDoc(family, cells.get("what clgraft runs") or cells["what"], cells["departures"])
    return out


def _table_cells(line: str) -> list[str]:
    """The cells of a Markdown table line; a `\\|` inside a cell is a literal bar."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


@dataclass(frozen=True)
class Run:
    """One finished run of a row: its record, its folder, and whether the leaderboard counts it (False for a second
    record of a seed: summarize keeps the first folder's, by name)."""

    record: dict
    folder: Path
    counted: bool


@dataclass(frozen=True)
class Row:
    """A leaderboard row with what its pages need: the frame's cells as printed (`frame`), the metric and paired
    cells as numbers, a short label (the method plus the options that tell it from rows of the same method on its
    stream), its family from docs/methods.md, its full configuration and hash, and its runs in seed order."""

    id: str
    key: str
    label: str
    family: str
    frame: dict
    cells: dict[str, Cell]
    setting: dict
    runs: list[Run]

    @property
    def section(self) -> str:
        """The stream and order the row belongs to: the index has one table per section."""
        return f"{self.frame['stream']}, order {self.frame['order']}" if self.frame["order"] else self.frame["stream"]


def leaderboard_rows(
    table: pd.DataFrame, records: list[dict], folders: list[Path], docs: dict[str, MethodDoc]
) -> list[Row]:
    """The frame's rows, in its order, each with its records (matched by configuration hash, as summarize groups
    them); labels are made per stream and order, as the per-stream plots make theirs."""
    runs: dict[str, list[Run]] = {}
    settings: dict[str, dict] = {}
    seeds: set[tuple[str, int]] = set()
    for record, folder in sorted(zip(records, folders, strict=True), key=lambda pair: pair[1].name):
        row_setting = setting(record)
        key = config_hash(row_setting)
        settings[key] = row_setting
        counted = (key, record["seed"]) not in seeds
        seeds.add((key, record["seed"]))
        runs.setdefault(key, []).append(Run(record, folder, counted))
    by_id = {row_id(key): key for key in runs}
    frame_rows = table.to_dict(orient="records")
    keys = [by_id[r["id"]] for r in frame_rows]
    labels = _labels(frame_rows, keys, runs, settings)
    return [
        Row(
            id=r["id"],
            key=key,
            label=labels[key],
            family=docs[r["method"]].family if r["method"] in docs else "other",
            frame=r,
            cells=_cells(r),
            setting=settings[key],
            runs=sorted(runs[key], key=lambda run: (run.record["seed"], run.folder.name)),
        )
        for r, key in zip(frame_rows, keys, strict=True)
    ]


def _cells(frame_row: dict) -> dict[str, Cell]:
    """A frame row's metric and paired cells as numbers; BWT and forgetting of a method whose R rows are transfer
    keep their text but lose their numbers (kind `transfer`)."""
    cells = {
        **{m: metric_cell(frame_row[m]) for m in METRICS},
        **{c: paired_cell(frame_row[c]) for c in PAIRED_COLUMNS},
    }
    if get_method(frame_row["method"]).r_rows_are_transfer:
        cells.update({c: Cell(cells[c].text, "transfer") for c in NOT_FORGETTING})
    return cells


def _labels(
    frame_rows: list[dict], keys: list[str], runs: dict[str, list[Run]], settings: dict[str, dict]
) -> dict[str, str]:
    """Each row's label (report.bar_labels, on one line), made among the rows of the same stream and order."""
    sections: dict[tuple[str, str], list[str]] = {}
    for r, key in zip(frame_rows, keys, strict=True):
        sections.setdefault((r["stream"], r["order"]), []).append(key)
    labels = {}
    for section in sections.values():
        entries = [{**runs[key][0].record["method"], "setting": settings[key]} for key in section]
        labels.update({k: " ".join(label.split()) for k, label in zip(section, bar_labels(entries), strict=True)})
    return labels


def docs_dir() -> Path:
    """The project's docs/: packaged inside the installed wheel, or at the root of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_docs"
    return packaged if packaged.is_dir() else package.parent / "docs"
