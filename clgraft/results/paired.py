"""Two leaderboard rows set against each other seed by seed (`clgraft paired A B`): per metric, each row's mean over
its seeds and the paired difference A − B over the seeds both have, with its 95% Student-t interval and the paired
t-test's p — the comparison a README or a paper quotes when it sets one row against another, computed from the
committed records by the leaderboard's own rows, ids and statistics."""

from __future__ import annotations

import pandas as pd

from clgraft.errors import ClgraftError
from clgraft.results.leaderboard import METRICS, fixed_text, metric_text, paired_text, row_id


def row_groups(frame: pd.DataFrame, ids: list[str]) -> list[pd.DataFrame]:
    """The `seed_rows` lines of each leaderboard row named by id, in the order given; refuses an unknown id and rows
    of different streams or orders (their seeds are not the same draws)."""
    groups = {row_id(key): group for key, group in frame.groupby("key", sort=False)}
    missing = [i for i in ids if i not in groups]
    if missing:
        raise ClgraftError(
            f"no leaderboard row has the id {', '.join(missing)}; the ids are in the id column of `clgraft leaderboard`"
        )
    picked = [groups[i] for i in ids]
    places = {(g["stream"].iloc[0], g["order"].iloc[0]) for g in picked}
    if len(places) > 1:
        raise ClgraftError(
            f"rows {' and '.join(ids)} are on different streams or orders "
            f"({', '.join(map('/'.join, sorted(places)))}): a seed of one is not a seed of the other, so they are not "
            "paired"
        )
    return picked


def paired_table(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per metric both rows (`row_groups`) measure: each row's cell (mean ± std [95% interval] in accuracy points, or
    the value a method fixes by construction, as the leaderboard prints them), and A − B over the seeds both have as
    the leaderboard's paired column prints it (mean [95% interval] p=… (n=pairs)), with the pairs' seeds."""
    lines = []
    for metric in METRICS:
        ours, theirs = (g.set_index("seed")[metric].dropna() for g in (first, second))
        if ours.empty or theirs.empty:
            continue
        fixed = [bool(g[f"{metric}_fixed"].all()) for g in (first, second)]
        difference = paired_text(ours.to_dict(), theirs.to_dict())
        seeds = sorted(set(ours.index) & set(theirs.index))
        lines.append(
            {
                "metric": metric,
                "A": fixed_text(ours.mean()) if fixed[0] else metric_text(ours),
                "B": fixed_text(theirs.mean()) if fixed[1] else metric_text(theirs),
                "A − B": f"{difference} (by construction)" if all(fixed) and difference != "-" else difference,
                "seeds paired": ", ".join(map(str, seeds)) or "none",
            }
        )
    return pd.DataFrame(lines)


def heading(first: pd.DataFrame, second: pd.DataFrame) -> str:
    """Which rows A and B (`row_groups`) are — id, method and options, and the settings that tell them apart beyond
    those — on the stream and order they share."""
    rows = [g.iloc[0] for g in (first, second)]
    skip = {"method", "method_options", "method_revision"}
    keys = set(rows[0]["setting"]) | set(rows[1]["setting"])
    differ = sorted(k for k in keys - skip if rows[0]["setting"].get(k) != rows[1]["setting"].get(k))

    def name(row: pd.Series) -> str:
        apart = "; ".join(f"{k}={row['setting'].get(k, '-')}" for k in differ)
        return f"{row_id(row['key'])}: {row['method']} ({row['options']}){f'; {apart}' if apart else ''}"

    return (
        f"{rows[0]['stream']}/{rows[0]['order']}, paired by seed; accuracy points.\n\n"
        f"- A = {name(rows[0])}\n- B = {name(rows[1])}"
    )
