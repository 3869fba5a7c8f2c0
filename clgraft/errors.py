"""The one exception type users see: a single line that names what is wrong and how to fix it."""

from __future__ import annotations

import re
import signal
from types import UnionType
from typing import Union, get_args, get_origin


class ClgraftError(Exception):
    """Bad input or an unrecoverable condition, reported on one line without a traceback."""


class NonFiniteLoss(ClgraftError):
    """The training loss became NaN or infinite; work finished before it is kept."""


class DiskFull(ClgraftError):
    """A write failed for want of space (disk full, a quota, a file size limit): a sweep stops at the first one rather
    than fail every cell after it; work finished before it is kept."""


class Stopped(BaseException):
    """SIGTERM or SIGINT asked a sweep to stop; `detail` says what finished and what is left. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on its way up swallows it; the command exits 128 + the signal."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def name(self) -> str:
        """The signal's name, e.g. SIGTERM."""
        return signal.Signals(self.signum).name


def validation_message(where: object, err: Exception, within: str = "") -> str:
    """One line for a pydantic ValidationError: the file, the first bad key (under `within`, if the model was one
    entry of the file) and why — pydantic's own text spans several lines, and for a misspelt key it does not say
    which keys are legal, so that case lists them."""
    first = err.errors()[0]  # type: ignore[attr-defined]
    loc = tuple(first["loc"])
    key = ".".join([within] * bool(within) + [str(p) for p in loc]) or "(top level)"
    why = first["msg"]
    if first["type"] == "extra_forbidden":
        why = _unknown_key(getattr(err, "title", ""), loc, within) or why
    return f"{where}: key '{key}': {why}"


def _unknown_key(title: str, loc: tuple, within: str) -> str | None:
    """'not a key of X; legal keys: ...' for the model that holds the bad key; None where that model is not found."""
    model = _model_at(_clgraft_model(title), loc[:-1])
    if model is None:
        return None
    legal = ", ".join(f.alias or name for name, f in model.model_fields.items() if not f.exclude)
    parent = ".".join([within] * bool(within) + [str(p) for p in loc[:-1]])
    what = parent or "a " + re.sub(r"(?<=[a-z])(?=[A-Z])", " ", title).lower()
    return f"not a key of {what}; legal keys: {legal}"


def _clgraft_model(title: str) -> type | None:
    """The clgraft pydantic model named `title`: a ValidationError names its model but does not hold it, so callers
    need not pass it. None where no clgraft model, or more than one, has that name."""
    from pydantic import BaseModel

    found, todo = set(), [BaseModel]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__name__ == title and cls.__module__.startswith("clgraft."):
            found.add(cls)
    return found.pop() if len(found) == 1 else None


def _model_at(tp: object, loc: tuple) -> type | None:
    """The pydantic model that type `tp` holds at `loc` (field names, list indices, dict keys), looking through
    optional values; None where `loc` leads to something else."""
    from pydantic import BaseModel

    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        return next(filter(None, (_model_at(arg, loc) for arg in args)), None)
    if origin in (list, dict):
        return _model_at(args[-1], loc[1:]) if args and loc else None
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return None
    if not loc:
        return tp
    field = tp.model_fields.get(loc[0])
    return _model_at(field.annotation, loc[1:]) if field else None
