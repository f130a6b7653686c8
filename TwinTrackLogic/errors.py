"""Errors meant for people.

Every error TwinTrack raises on purpose is a :class:`TwinTrackError`: its message
says what is wrong, which file, and what to do. The command line prints the
message without a traceback; anything else is a bug and keeps its traceback.
"""


class TwinTrackError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class InputError(TwinTrackError):
    """An input file or folder is missing, unreadable or not what it should be."""


class GeometryMismatchError(InputError):
    """Two images that must share a voxel grid do not."""


class Cancelled(TwinTrackError):
    """The user cancelled a long-running job; nothing partial was kept."""


class OutputError(TwinTrackError):
    """An output cannot be written where asked (bad path, would overwrite an input, disk full)."""
