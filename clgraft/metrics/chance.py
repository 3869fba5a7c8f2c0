"""Whether a fine-tune learned a task at all: its test accuracy against chance, by a one-sided binomial test.

A claim that averages over tasks reads only the tasks the fine-tune learned (docs/claims.md): a task whose fine-tuned
accuracy cannot be told from guessing has no skill to localize, forget or calibrate, and its ratios and differences
are noise that would sway the mean.
"""

from __future__ import annotations

LEARNED_ALPHA = 0.05
"""The one-sided level of the test: a task is learned when P(this many or more right | guessing) < 0.05."""


def beats_chance(accuracy: float, n: int, classes: int, alpha: float = LEARNED_ALPHA) -> bool:
    """Whether `accuracy` on `n` test examples beats guessing among `classes` labels (chance = 1/classes): the
    one-sided binomial test of round(accuracy · n) successes against p = 1/classes rejects at `alpha`."""
    from scipy.stats import binomtest

    successes = round(accuracy * n)
    return binomtest(successes, n, 1 / classes, alternative="greater").pvalue < alpha
