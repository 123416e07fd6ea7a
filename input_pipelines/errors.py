"""Exceptions raised by input pipelines.

Every error says what went wrong, where (file and line for data errors) and what to do.
"""

from __future__ import annotations


class InputPipelineError(Exception):
    """Base class of all input-pipeline errors."""


class NoFilesMatchError(InputPipelineError, FileNotFoundError):
    """A file pattern (glob) matched no file."""


class UnreadableFileError(InputPipelineError, OSError):
    """A file exists in the file list but cannot be opened or read."""


class DataFormatError(InputPipelineError, ValueError):
    """A record is malformed: wrong number of fields, unparsable value or missing required value.

    Attributes:
      path: the file holding the bad record.
      line: 1-based line number of the bad record in that file (None when unknown).
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


class StateError(InputPipelineError, ValueError):
    """An iterator state cannot be restored (wrong pipeline, wrong version or corrupt)."""


class StructureError(InputPipelineError, ValueError):
    """Elements have an unexpected structure (ragged leaves, wrong row counts, bad map output)."""
