"""Continual-learning methods, one module each, in one explicit registry keyed by name."""

from __future__ import annotations

from clgraft.errors import ClgraftError
from clgraft.methods.base import Method
from clgraft.methods.naive import Naive

METHODS: dict[str, Method] = {m.name: m for m in [Naive()]}


def get_method(name: str) -> Method:
    """The registered method called `name`, or a one-line error listing the known ones."""
    if name not in METHODS:
        raise ClgraftError(f"unknown method '{name}'; known methods: {', '.join(METHODS)} (clgraft methods list)")
    return METHODS[name]
