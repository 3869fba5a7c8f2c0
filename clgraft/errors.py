"""The one exception type users see: a single line that names what is wrong and how to fix it."""


class ClgraftError(Exception):
    """Bad input or an unrecoverable condition, reported on one line without a traceback."""


class NonFiniteLoss(ClgraftError):
    """The training loss became NaN or infinite; work finished before it is kept."""


def validation_message(where: object, err: Exception, within: str = "") -> str:
    """One line for a pydantic ValidationError: the file, the first bad key (under `within`, if the model was one
    entry of the file) and why — pydantic's own text spans several lines."""
    first = err.errors()[0]  # type: ignore[attr-defined]
    key = ".".join([within] * bool(within) + [str(p) for p in first["loc"]]) or "(top level)"
    return f"{where}: key '{key}': {first['msg']}"
