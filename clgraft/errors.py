"""The one exception type users see: a single line that names what is wrong and how to fix it."""


class ClgraftError(Exception):
    """Bad input or an unrecoverable condition, reported on one line without a traceback."""


class NonFiniteLoss(ClgraftError):
    """The training loss became NaN or infinite; work finished before it is kept."""
