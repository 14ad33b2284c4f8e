"""One error type for bad input data: it names the file and, where known, the line."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data; the message starts with `file:line:` so it can be found."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        """Pickled as its arguments: it crosses from a stage's process to the entry point."""
        return type(self), (self.path, self.message, self.line)
