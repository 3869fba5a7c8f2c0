"""A claim's verdict (docs/claims.md, "Verdicts"): where its 95% interval over seeds lies against the paper's
expectation, then the words that say what that means for the paper.

The interval is read the same way for every claim: the whole interval on the expected side (holds), on the other side
(fails), inside ±margin of the expected value for an effect claim with a smallest effect of interest (no effect
larger than the margin), else inconclusive. The words depend on what was measured where: only a paper's own quantity
in the paper's setting gives "reproduced" or "not reproduced"; a setting with departures says "not tested in the
paper's setting (… in this one)", and a quantity clgraft defines itself is a clgraft finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clgraft.sweeps.claims import Claim, Expect

MIN_SEEDS = 3
LEVEL = 0.95

Outcome = Literal["holds", "fails", "no effect", "inconclusive"]

_SHOWN = {">": ">", ">=": "≥", "<": "<", "<=": "≤"}
_OTHER_SIDE = {">": "≤", ">=": "<", "<": "≥", "<=": ">"}


@dataclass(frozen=True)
class Reading:
    """Where the interval lies (`outcome`) and the interval against the threshold, as the report prints it."""

    outcome: Outcome
    detail: str


NO_VALUE = Reading("inconclusive", "the records give no seed a value: every task left out, or the analysis missing")
"""The reading of a claim whose seeds have records but no value (no task counted)."""


def read_interval(expect: Expect, low: float, high: float, n: int) -> Reading:
    """The outcome of an interval [low, high] over n seeds against `expect` (n < MIN_SEEDS: inconclusive). An effect
    claim's equivalence is read first: an interval inside value ± margin is no effect of interest, even where it also
    lies on the expected side."""
    if n < MIN_SEEDS:
        return Reading("inconclusive", f"{n} of the {MIN_SEEDS} seeds needed have records")
    op, value = expect.op, expect.value
    interval = f"95% CI [{low:.3g}, {high:.3g}]"
    if expect.sesoi is not None and value - expect.sesoi.margin < low and high < value + expect.sesoi.margin:
        return Reading("no effect", f"{interval} inside {value:g} ± {expect.sesoi.margin:g}")
    agrees, disagrees = {
        ">": (low > value, high <= value),
        ">=": (low >= value, high < value),
        "<": (high < value, low >= value),
        "<=": (high <= value, low > value),
    }[op]
    if agrees:
        return Reading("holds", f"{interval} {_SHOWN[op]} {value:g}")
    if disagrees:
        return Reading("fails", f"{interval} {_OTHER_SIDE[op]} {value:g}")
    return Reading("inconclusive", f"{interval} contains {value:g}")


def _outcome_words(claim: Claim, outcome: Outcome) -> str:
    if outcome == "no effect":
        return f"no effect larger than {claim.expect.sesoi.margin:g}"
    return outcome


def verdict_words(claim: Claim, reading: Reading) -> str:
    """The verdict as the report gives it: a clgraft finding for clgraft's own quantity; "not tested in the paper's
    setting (… in this one: …)" where the claim lists departures; reproduced / not reproduced / inconclusive / no
    effect larger than X only for the paper's quantity in the paper's setting."""
    said = _outcome_words(claim, reading.outcome)
    if claim.quantity == "clgraft":
        return f"clgraft finding: {said} in this setting ({reading.detail})"
    if claim.departures:
        return f"not tested in the paper's setting ({said} in this one: {reading.detail})"
    paper = {"holds": "reproduced", "fails": "not reproduced"}.get(reading.outcome, said)
    return f"{paper} ({reading.detail})"


def setting_words(claim: Claim) -> str:
    """The report's setting column: "paper's setting", or the aspects in which the claim's setting departs."""
    if not claim.departures:
        return "paper's setting"
    return "departs: " + ", ".join(d.what for d in claim.departures)


def multiplicity(decided: int) -> str:
    """Sentences on reading `decided` verdicts each at 95% with no correction."""
    return (
        f"Verdicts read from a {LEVEL:.0%} interval: {decided}, with no multiplicity correction. Were every claim's "
        f"null true, about {(1 - LEVEL) * decided:.1f} of them would still come out decided by chance (a Bonferroni "
        f"reading would need each interval at {100 * (1 - (1 - LEVEL) / max(decided, 1)):.1f}%)."
    )
