"""The leaderboard as a static site (`clgraft site`): an index with one sortable, filterable table per stream and
order — every metric with its 95% interval, the paired difference from naive and the header's provenance — a page
per row (configuration, per-seed values, R heatmaps, accuracy over the stream, the method's paper and departures,
its BibTeX), the accuracy-memory frontier, the claims and the docs. It reads the frame `clgraft leaderboard` prints
(leaderboard.summarize), so no number is aggregated twice, and it is made of files only: every script and style is
in the folder, nothing is fetched when it is viewed, and the same records give the same bytes."""

from __future__ import annotations

import functools
import json
import re
import shutil
import sys
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import markdown

from clgraft.data.references import bibtex
from clgraft.errors import ClgraftError
from clgraft.io.records import write_text
from clgraft.methods import get_method
from clgraft.results.leaderboard import METRICS, header, load, render, summarize, verify_predictions
from clgraft.site.charts import (
    accuracy_over_time,
    claim_chart,
    frontier_chart,
    frontier_points,
    interval_chart,
    r_heatmap,
)
from clgraft.site.data import (
    NOT_FORGETTING,
    PAIRED_COLUMNS,
    Cell,
    MethodDoc,
    Row,
    Run,
    docs_dir,
    leaderboard_rows,
    method_docs,
)
from clgraft.sweeps.claim_report import measured_text
from clgraft.sweeps.claims import load_claims, measure

ASSETS = Path(__file__).with_name("assets")
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "site.js", "site.css", "LICENSE-vega.txt")
MANIFEST = ".clgraft-site"
"""Lists the files a build wrote, so that the next build into the same folder removes exactly those (a row that
left the leaderboard leaves no page behind) and never a file it did not write."""
SORT_BY = "acc"
COLUMNS = {
    "acc": ("ACC", "average accuracy after the last task; higher is better"),
    "acc_vs_naive": ("Δ ACC vs naive", "mean paired difference from naive, same seeds"),
    "forgetting": ("forgetting", "mean drop from each task's best accuracy; lower is better"),
    "forgetting_vs_naive": ("Δ forgetting vs naive", "mean paired difference from naive, same seeds"),
    "bwt": ("BWT", "backward transfer"),
    "fwt": ("FWT", "forward transfer"),
    "la": ("LA", "learning accuracy: each task right after its training"),
}


def build_site(results: Path, out: Path, data_dir: Path | None = None) -> list[Path]:
    """Write the site for the finished runs under RESULTS into OUT; returns the files written. OUT must be new,
    empty, or a folder a previous build wrote (its files are replaced). `data_dir` holds the task data the memory
    of example-keeping methods is counted from (as `clgraft leaderboard --data-dir`)."""
    found, skipped = load(results)
    for s in skipped:
        print(f"clgraft: warning: skipped, not counted: {s}", file=sys.stderr)
    total = len(found)
    verified = total - len(verify_predictions(found))
    records = list(found.values())
    table = summarize(records, sort_by=SORT_BY, data_dir=data_dir)
    docs = method_docs((docs_dir() / "methods.md").read_text(encoding="utf-8"))
    rows = leaderboard_rows(table, records, list(found), docs)
    pages = _Pages(out, docs)
    _clear_previous(out)
    written = [pages.asset(name) for name in SCRIPTS]
    written.append(pages.text("leaderboard.csv", render(table, "csv")))
    written.append(pages.index(rows, _provenance(records, results, verified, total)))
    written += [pages.row(row) for row in rows]
    written += [pages.record(run.folder) for row in rows for run in row.runs]
    written.append(pages.frontier(rows))
    written.append(pages.claims(results))
    written += [pages.doc(path) for path in sorted(docs_dir().glob("*.md"))]
    pages.text(MANIFEST, "".join(f"{p.relative_to(out).as_posix()}\n" for p in sorted(written)))
    return written


def _clear_previous(out: Path) -> None:
    """Remove the files the last build wrote into OUT (listed in its manifest, never a path outside OUT) and the
    folders they leave empty; refuse a non-empty folder that has no manifest, whose files are someone else's."""
    manifest = out / MANIFEST
    if manifest.is_file():
        root = out.resolve()
        paths = [
            p
            for p in ((root / n).resolve() for n in manifest.read_text(encoding="utf-8").split())
            if p.is_relative_to(root)
        ]
        for path in paths:
            path.unlink(missing_ok=True)
        for folder in sorted(
            {f for p in paths for f in p.parents if f.is_relative_to(root) and f != root}, reverse=True
        ):
            if not any(folder.iterdir()):  # deepest first: a run folder, then runs/ once it is empty
                folder.rmdir()
        manifest.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise ClgraftError(f"--out {out} holds files `clgraft site` did not write; give a new or empty folder")


def _provenance(records: list[dict], results: Path, verified: int, total: int) -> dict:
    """The leaderboard header, split where the site shows it: the versions (commit, model and data hashes), the runs
    (model, protocol settings, seeds, hardware), how many runs' R were recomputed, and each sweep's "k of n cells"."""
    from clgraft.sweeps.sweep import sweep_progress

    versions, runs = header(records).split("\n\n", 1)
    sweeps = sweep_progress(results)
    return {
        "summary": "; ".join([f"{len(records)} runs", *(line.split(" (")[0] for line in sweeps)]),
        "versions": versions,
        "runs": runs,
        "verified": f"R of {verified} of {total} runs recomputed from their kept predictions.",
        "sweeps": sweeps,
    }


class _Pages:
    """Renders the site's templates (clgraft/site/assets/templates) into OUT, one method per kind of page."""

    def __init__(self, out: Path, docs: dict[str, MethodDoc]):
        self.out = out
        self.docs = docs
        self.families = [*dict.fromkeys(d.family for d in docs.values()), "other"]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(ASSETS / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["markdown"] = _inline_markdown
        self.env.filters["chart"] = _chart_json
        self.env.filters["verdict_class"] = _verdict_class
        self.env.globals["measured"] = measured_text

    def _page(self, name: str, template: str, **context) -> Path:
        root = "../" * name.count("/")
        html = self.env.get_template(template).render(root=root, page=name, families=self.families, **context)
        return self.text(name, html)

    def text(self, name: str, text: str) -> Path:
        path = self.out / name
        write_text(path, text)
        return path

    def asset(self, name: str) -> Path:
        path = self.out / "assets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / name, path)
        return path

    def record(self, folder: Path) -> Path:
        """A run's record, copied byte for byte, so that a row page can link to it wherever the site is served."""
        path = self.out / "runs" / folder.name / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "run.json", path)
        return path

    def index(self, rows: list[Row], provenance: dict) -> Path:
        sections: dict[str, list[Row]] = {}
        for row in rows:
            sections.setdefault(row.section, []).append(row)
        return self._page(
            "index.html",
            "index.html",
            title="Leaderboard",
            provenance=provenance,
            columns=COLUMNS,
            sort_by=SORT_BY,
            sections=[_section(name, part, self.families) for name, part in sections.items()],
            present={row.family for row in rows},
        )

    def row(self, row: Row) -> Path:
        counted = [run for run in row.runs if run.counted]
        return self._page(
            f"rows/{row.id}.html",
            "row.html",
            title=f"{row.label} on {row.section}",
            row=row,
            anchor=section_anchor(row.section),
            seeds=[_seed_values(run) for run in row.runs],
            columns=COLUMNS,
            metrics=METRICS,
            cells={c: _shown(row.cells[c], None) for c in COLUMNS},
            doc=self.docs.get(row.frame["method"]),
            bibtex=bibtex([k for k in row.frame["cite"].split(", ") if k]),
            setting={k: _setting_value(v) for k, v in row.setting.items()},
            mean_heatmap=r_heatmap(counted, f"mean over {len(counted)} seed{'s' * (len(counted) != 1)}"),
            seed_heatmaps=[r_heatmap([run], f"seed {run.record['seed']}") for run in row.runs],
            over_time=accuracy_over_time(counted),
        )

    def frontier(self, rows: list[Row]) -> Path:
        sections: dict[str, list[Row]] = {}
        for row in rows:
            sections.setdefault(row.section, []).append(row)
        points = {
            name: frontier_points([row for row in part if not get_method(row.frame["method"]).joint], "rows/{id}.html")
            for name, part in sections.items()
        }
        charts = {
            name: frontier_chart(
                points[name], [row for row in part if get_method(row.frame["method"]).joint], self.families
            )
            for name, part in sections.items()
        }
        fronts = {
            name: sorted((p for p in part if p["front"]), key=lambda p: p["front"]) for name, part in points.items()
        }
        present = {row.family for row in rows}
        return self._page(
            "frontier.html",
            "frontier.html",
            title="Accuracy against memory",
            charts=charts,
            fronts=fronts,
            present=present,
        )

    def claims(self, results: Path) -> Path:
        claims = [(c, measure(results, c)) for c in load_claims()]
        charts = {
            c.claim: claim_chart(m.values, m.mean, m.low, m.high, c.expect.op, c.expect.value)
            for c, m in claims
            if len(m.values) > 1
        }
        return self._page("claims.html", "claims.html", title="Claims of the seed papers", claims=claims, charts=charts)

    def doc(self, path: Path) -> Path:
        html = markdown.markdown(
            path.read_text(encoding="utf-8"),
            extensions=["tables", "fenced_code", "toc"],
            extension_configs={"toc": {"slugify": _github_slug}},
        )
        html = re.sub(r'href="([\w-]+)\.md(#[^"]*)?"', r'href="\1.html\2"', html)
        title = path.read_text(encoding="utf-8").split("\n", 1)[0].lstrip("# ")
        return self._page(f"docs/{path.stem}.html", "doc.html", title=title, body=html)


def _section(name: str, rows: list[Row], families: list[str]) -> dict:
    """One stream and order of the index: its tasks, its rows' cells as shown, and the ACC and forgetting charts."""
    scales = {c: _scale([row.cells[c] for row in rows], c in PAIRED_COLUMNS) for c in COLUMNS}
    first = rows[0].runs[0].record
    return {
        "name": name,
        "anchor": section_anchor(name),
        "tasks": " → ".join(t["name"] for t in first["tasks"]),
        "rows": [(row, {c: _shown(row.cells[c], scales[c]) for c in COLUMNS}) for row in rows],
        "charts": [
            (interval_chart(rows, column, axis, families, "rows/{id}.html"), _caption(name, rows, column))
            for column, axis in (("acc", "ACC (%)"), ("forgetting", "forgetting (points)"))
        ],
    }


def section_anchor(name: str) -> str:
    """The index's anchor of a stream and order (`lmbff-mixed-order-forward`)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _caption(name: str, rows: list[Row], column: str) -> str:
    """A dot plot's caption: what it shows, how to read it, and which rows it leaves out because the table says n/a."""
    missing = [row.label for row in rows if row.cells[column].kind == "missing"]
    transfer = [row.label for row in rows if row.cells[column].kind == "transfer"]
    left_out = f" Not defined, so not drawn: {', '.join(missing)}." if missing else ""
    left_out += f" Transfer rather than forgetting, so not drawn: {', '.join(transfer)}." if transfer else ""
    return (
        f"{COLUMNS[column][0]} per row, {name} ({COLUMNS[column][1]}): the dot is the mean over seeds, the line its "
        f"95% interval; hover for the numbers, click to open the row.{left_out}"
    )


def _seed_values(run: Run) -> dict:
    """A run's line of a row page: its metrics in points (or n/a, or what the method fixes by construction, or
    '(transfer)' after a BWT or forgetting read off R rows that are transfer), wall time, the folder its record is
    copied to, and whether the leaderboard counts it."""
    metrics, fixed = run.record["metrics"], run.record.get("metrics_by_construction", {})
    transfer = get_method(run.record["method"]["name"]).r_rows_are_transfer

    def shown(m: str) -> str:
        if metrics[m] is None:
            return "n/a"
        if m in fixed:
            return f"{100 * metrics[m] + 0.0:.0f} (by construction)"
        return f"{100 * metrics[m]:.2f}" + (" (transfer)" if transfer and m in NOT_FORGETTING else "")

    return {
        "seed": run.record["seed"],
        "metrics": {m: shown(m) for m in METRICS},
        "wall_s": f"{run.record['wall_s']:.0f}",
        "folder": run.folder.name,
        "counted": run.counted,
    }


def _scale(cells: list[Cell], with_zero: bool) -> tuple[float, float]:
    """The range a column's whiskers are drawn on: every value and interval end of the table (and 0 for a paired
    difference, so its sign shows)."""
    ends = [v for c in cells for v in (c.value, c.low, c.high) if v is not None] + ([0.0] if with_zero else [])
    low, high = (min(ends), max(ends)) if ends else (0.0, 1.0)
    return (low - 0.5, high + 0.5) if high == low else (low, high)


def _shown(cell: Cell, scale: tuple[float, float] | None) -> dict:
    """How a cell is shown: its main number, then the rest of the leaderboard's text (± std [interval], p and n, or
    what the number is), a whisker's CSS positions on the column's scale, and the value the table sorts by."""
    if cell.kind == "missing":
        return {"main": cell.text, "sub": "", "kind": cell.kind, "value": "", "style": ""}
    if cell.kind == "transfer":
        sub = f"R rows are transfer (each task from θ₀), not forgetting; the table prints {cell.text}"
        return {"main": "n/a", "sub": sub, "kind": cell.kind, "value": "", "style": ""}
    main, _, rest = cell.text.partition(" ")
    sub = rest or "1 seed, no interval"
    return {"main": main, "sub": sub, "kind": cell.kind, "value": f"{cell.value:g}", "style": _whisker(cell, scale)}


def _whisker(cell: Cell, scale: tuple[float, float] | None) -> str:
    """CSS custom properties placing a cell's interval (--a to --b), its value (--m) and zero (--z) in % of the
    column's range; empty where no whisker is drawn."""
    if scale is None or cell.kind == "by-construction":
        return ""
    low, high = scale

    def at(v: float) -> str:
        return f"{100 * (v - low) / (high - low):.1f}%"

    ends = (cell.low, cell.high) if cell.low is not None else (cell.value, cell.value)
    zero = f";--z:{at(0.0)}" if low <= 0 <= high else ""
    return f"--a:{at(ends[0])};--b:{at(ends[1])};--m:{at(cell.value)}{zero}"


def _setting_value(value: object) -> str:
    """A configuration value as it reads in JSON (lists, dicts, true/false, null)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _inline_markdown(text: str) -> str:
    """One line of Markdown (a docs table cell, a method's `data_kept`) as inline HTML."""
    return markdown.markdown(text).removeprefix("<p>").removesuffix("</p>")


def _verdict_class(verdict: str) -> str:
    """The CSS class of a claim's verdict badge, by what its interval showed (claim_verdicts.verdict_words):
    holds or reproduced, fails or not reproduced (and "no effect larger than X" against a claimed effect),
    inconclusive, or not measured (not run, needs a GPU or network)."""
    if verdict.startswith(("needs", "not run")):
        return "v-needs"
    outcome = verdict.removeprefix("clgraft finding: ")
    if outcome.startswith("not tested"):
        outcome = outcome.split("(", 1)[1]
    for words, css in (
        ("not reproduced", "v-not-reproduced"),
        ("fails", "v-not-reproduced"),
        ("no effect larger", "v-not-reproduced"),
        ("inconclusive", "v-inconclusive"),
        ("reproduced", "v-reproduced"),
        ("holds", "v-reproduced"),
    ):
        if outcome.startswith(words):
            return css
    raise ValueError(f"a verdict the site cannot classify: {verdict!r}")


def _chart_json(spec: dict) -> str:
    """A Vega-Lite spec as JSON to put inside <script type="application/json">: keys sorted (same spec, same bytes)
    and `<` escaped so that no string can close the script element."""
    return json.dumps(spec, sort_keys=True, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _github_slug(value: str, separator: str) -> str:
    """A heading's anchor as GitHub makes it, so that the docs' links to sections (#4-analyses-…) still land."""
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


def serve(out: Path, port: int, announce: Callable[[str], None]) -> None:
    """Serve OUT on 127.0.0.1:PORT until interrupted (a quick look; any static host serves the folder as well)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(out))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        announce(f"serving {out} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        server.serve_forever()
