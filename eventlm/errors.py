"""The one error family for bad input files: `EventDataError`.

Every reader, converter and loader of eventlm raises `EventDataError` (a ValueError, so `except
ValueError` keeps working) for a file or table it cannot use: a recording, an events table, a Hub
dataset row, a config.json, a weights or tokenizer file. The message names the file, the byte offset
or row where it is known, and the fix. A file that does not exist stays FileNotFoundError (an OSError).

A library's own failure on damaged data (struct.error, zipfile.BadZipFile, EOFError,
UnicodeDecodeError, a pyo3 `PanicException`, which is a BaseException that `except Exception` does
not catch) is caught at the boundary by `as_data_error` and re-raised `from` the original.
"""

from typing import Optional

__all__ = ["EventDataError", "as_data_error", "is_library_failure", "did_you_mean"]


class EventDataError(ValueError):
    """A file or table eventlm cannot use: `path`, `offset` (bytes) and `row` where known."""

    def __init__(self, message: str, *, path=None, offset: Optional[int] = None, row: Optional[int] = None):
        super().__init__(message)
        self.path, self.offset, self.row = path, offset, row


# the errors a reader or loader lets through as they are: missing files, the machine's limits (memory: claimed
# sizes are checked before allocating, so a MemoryError is a real shortage, not a damaged file), interrupts
_PASS_THROUGH = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, MemoryError,
                 KeyboardInterrupt, SystemExit, GeneratorExit)


def is_library_failure(err: BaseException) -> bool:
    """True for an exception a library raised on damaged data (to be re-raised as EventDataError):
    any Exception but the pass-through ones (missing files, EventDataError itself), and pyo3's
    PanicException (a BaseException, matched by class name: pyo3 exports no importable class)."""
    if isinstance(err, (EventDataError,) + _PASS_THROUGH):
        return False
    return isinstance(err, Exception) or type(err).__name__ == "PanicException"


def as_data_error(err: BaseException, where, what: str, fix: str = "", path=None, **position) -> EventDataError:
    """An EventDataError for a library's failure `err` on `where` (how the message names the file or row),
    read as `what`: 'where: not a readable <what> (<Class>: message); <fix>'. path: the file (default:
    `where`); position: offset= / row= where known. Raise it `from err`."""
    first = str(err).splitlines()[0] if str(err) else ""
    detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return EventDataError(f"{where}: not a readable {what} ({detail})" + (f"; {fix}" if fix else ""),
                          path=where if path is None else path, **position)


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest of `choices` (difflib), or '': for unknown names of presets."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
