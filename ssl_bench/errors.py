"""User-facing errors: the CLI prints their message as one line and exits non-zero, without a traceback."""


def one_line(exc: BaseException, whole: bool = False) -> str:
    """``Type: first line of the message`` (``whole``: every line of it, joined), for a failure reported inside
    another message."""
    text = " ".join(str(exc).split()) if whole else next(iter(str(exc).strip().splitlines()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SSLBenchError(Exception):
    """A mistake in the user's input (config, recipe, split id, data files, checkpoint)."""


class ConfigError(SSLBenchError):
    """An unknown key, a wrong type or an unknown component name in a config or recipe."""


class DataError(SSLBenchError):
    """Dataset files that are missing, malformed or not what a manifest recorded."""


class SplitError(SSLBenchError):
    """A split id that cannot be parsed or a label budget that cannot be drawn."""


class CheckpointError(SSLBenchError):
    """A checkpoint that is corrupted or belongs to another run."""


class DivergenceError(SSLBenchError):
    """A run whose loss turned non-finite or whose accuracy sits at chance level: a failure, never a result."""


class RunMemoryError(SSLBenchError):
    """A run that ran out of memory while it trained (its batch, model or evaluation batch too large for the
    device): a failure of this run, never a result; the last checkpoint is kept."""


class ResultsDirError(SSLBenchError):
    """A results directory that is not a directory, cannot be written, or a path that would leave it."""


class WriteError(SSLBenchError):
    """A results file (record, checkpoint, manifest, leaderboard) that could not be written: disk full, no
    permission, read-only filesystem. What was written before is intact."""
