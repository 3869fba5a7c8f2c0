"""Continual-learning methods, one module each, in one explicit registry keyed by name.

Adding a method = adding a module with a `Method` subclass and listing it here.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from clgraft.errors import ClgraftError
from clgraft.methods.agem import AGem
from clgraft.methods.base import Method
from clgraft.methods.emr import Emr
from clgraft.methods.ewc import Ewc
from clgraft.methods.graft_compose import GraftCompose
from clgraft.methods.graft_freeze import GraftFreeze
from clgraft.methods.independent import Independent
from clgraft.methods.joint import Joint
from clgraft.methods.lwf import Lwf
from clgraft.methods.magmax import MagMax
from clgraft.methods.merge import MergeTaskVectors
from clgraft.methods.naive import Naive
from clgraft.methods.olora import OLora
from clgraft.methods.osf import Osf
from clgraft.methods.packnet import PackNet
from clgraft.methods.replay import Replay
from clgraft.methods.seqlora import SeqLora
from clgraft.methods.tall_masks import TallMasks

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in [
        Naive,
        Ewc,
        Lwf,
        Replay,
        AGem,
        PackNet,
        Joint,
        Independent,
        GraftFreeze,
        GraftCompose,
        MergeTaskVectors,
        MagMax,
        TallMasks,
        Emr,
        SeqLora,
        OLora,
        Osf,
    ]
}


# Names the literature uses for a configured method: resolved to (method, options) before a run is configured, so
# run.json and the config hash always hold the method's own name and every option.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "task-arithmetic": ("merge", {"merge": "task-arithmetic"}),
    "ties": ("merge", {"merge": "ties"}),
    "dare": ("merge", {"merge": "dare"}),
    "stitch": ("graft-compose", {"compose": "stitch", "localizer": "stitch"}),
    "consensus": ("tall-masks", {"mode": "consensus"}),
}


def get_method(name: str) -> type[Method]:
    """The registered method class called `name`, or a one-line error listing the known ones."""
    if name not in METHODS:
        known = ", ".join([*METHODS, *ALIASES])
        raise ClgraftError(f"unknown method '{name}'; known methods: {known} (clgraft methods list)")
    return METHODS[name]


def resolve(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(method, options) for a method name or alias; options given explicitly win over the alias's."""
    if name in ALIASES:
        method, preset = ALIASES[name]
        return method, {**preset, **options}
    get_method(name)
    return name, options


def parse_options(method: type[Method], given: dict[str, Any]) -> BaseModel:
    """Validate --opt values against the method's options; names the bad key and lists the legal ones."""
    try:
        return method.Options.model_validate(given)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        legal = ", ".join(f"{k}={v}" for k, v in method.option_defaults().items()) or "none"
        raise ClgraftError(f"--opt {key}: {first['msg']} (method {method.name} takes: {legal})") from e


def option_value(text: str) -> Any:
    """A number where the text is one (YAML 1.1 reads 1e-3 as a string), else the YAML value (true, [1, 2], …)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_option_pairs(pairs: list[str], where: str) -> dict[str, Any]:
    """KEY=VALUE strings as a dict of typed values; `where` names the option or file in errors."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClgraftError(f"{where} {pair!r}: write KEY=VALUE, e.g. ewc_lambda=1000")
        out[key] = option_value(value)
    return out


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'NAME[:KEY=VALUE...]' (a method or an alias) as (method, options), the options validated."""
    name, *pairs = spec.split(":")
    method, options = resolve(name, parse_option_pairs(pairs, name))
    parse_options(get_method(method), options)
    return method, options
