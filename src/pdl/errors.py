"""One exception family. The core raises these; the CLI catches them once and prints one line."""

from __future__ import annotations

import traceback


class PdlError(Exception):
    """Base of every error pdl raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(PdlError):
    """An option, a pipeline file or a loader argument is invalid."""


class DatasetError(PdlError):
    """The image folder cannot be used (missing, empty)."""


class ImageReadError(DatasetError):
    """One image cannot be read or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class WorkerError(PdlError):
    """An exception raised inside a loader worker, carried back to the caller."""

    def __init__(self, message: str, *, exc_type: str = "", path: str | None = None, tb: str = "") -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.path = path
        self.worker_traceback = tb

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_worker_error, (type(self), str(self), self.exc_type, self.path, self.worker_traceback))


def _rebuild_worker_error(cls: type[WorkerError], msg: str, exc_type: str, path: str | None, tb: str) -> WorkerError:
    return cls(msg, exc_type=exc_type, path=path, tb=tb)


class WorkerDiedError(WorkerError):
    """A worker process ended without saying why (killed by a signal, crashed, out of memory)."""


class LoaderTimeoutError(PdlError):
    """No batch arrived within the loader's timeout."""


class NoProgressError(LoaderTimeoutError):
    """No `timeout` was given and the loader's workers made no progress for the watchdog's bound (derived from
    the slowest work seen, ``loaders.watchdog``): a hang, not a slow run. Not a usage error: exit code 6."""

    exit_code = 6


class SharedMemoryError(PdlError):
    """The shared-memory ring cannot be allocated."""


class ResultsError(PdlError):
    """A results file is missing, damaged or of another schema version."""


class ResultsNotSaved(PdlError):
    """The results folder could not take the results; they were saved elsewhere (named). Not a usage error, not a
    regression: exit code 5."""

    exit_code = 5


class MissingDependencyError(PdlError):
    """An optional extra (torch, ray, matplotlib) is not installed."""


class RegressionFound(PdlError):
    """The regression gate found a real slowdown. Not a usage error: exit code 1."""

    exit_code = 1


class PdlWarning(UserWarning):
    """Something the user should know about a run that still works (shown once)."""


def worker_error(exc: BaseException, path: str | None, doing: str) -> WorkerError:
    """``exc`` as a WorkerError that survives pickling: its type, message, the image's path and the traceback."""
    if isinstance(exc, WorkerError):
        return exc
    where = f" while {doing} {path}" if path else ""
    kind = type(exc).__name__
    if kind == "error":  # OpenCV's cv2.error: "error: error: …" said nothing
        kind = f"{type(exc).__module__}.error"
    text = " ".join(str(exc).split())  # OpenCV's messages end in a newline: one line, as every error here
    return WorkerError(
        f"{kind}: {text}{where}",
        exc_type=type(exc).__name__,
        path=path,
        tb="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )
