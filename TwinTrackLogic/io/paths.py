"""Output paths checked before any work starts: never over an input, never two outputs on one path.

Every command calls :func:`check_outputs` first with what it will write and what it reads.
Same file means the same file on disk (device and inode), so a symbolic link, a hard link, a
``..`` detour or another case of the name on a case-insensitive disk (macOS, Windows) are all
caught; two outputs whose names differ only in case are refused too, because they would be one
file on such a disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

from ..errors import OutputError
from .geometry import PathLike
from .outputs import check_image_output_suffix


@dataclass(frozen=True)
class Output:
    """One path a command will write: its option (for messages), the path, and its kind."""

    option: str
    path: Path
    kind: str = "image"  # image | json | file (any other single file) | folder


@dataclass(frozen=True)
class Input:
    """One path a command reads. A folder counts with every file under it; ``sealed`` (why): nothing
    may be written anywhere inside it either (a DICOM series folder, a model bundle)."""

    option: str
    path: Path
    sealed: str = ""


def output_paths(*entries: Tuple[str, Optional[PathLike], str]) -> list:
    """``Output``s from ``(option, path, kind)`` triples, skipping options not given (None)."""
    return [Output(option, Path(path), kind) for option, path, kind in entries if path is not None]


def input_paths(*entries: Tuple[str, Optional[PathLike]], sealed: Optional[Dict[str, str]] = None) -> list:
    """``Input``s from ``(option, path)`` pairs, skipping options not given (None); ``sealed``: the
    options whose folder nothing may be written into, with the reason."""
    sealed = sealed or {}
    return [Input(option, Path(path), sealed.get(option, "")) for option, path in entries if path is not None]


def _check_kind(output: Output) -> None:
    path, option = output.path, output.option
    if output.kind == "folder":
        if path.exists() and not path.is_dir():
            raise OutputError(f"{option} {path} is an existing file, not a folder. Name a folder to write "
                              "into (it is created if missing).")
        return
    if path.is_dir():
        raise OutputError(f"{option} {path} is an existing folder; name the file to write inside it "
                          f"(for example {path / ('out.nii.gz' if output.kind == 'image' else 'out.json')}).")
    if output.kind == "image":
        check_image_output_suffix(path, option)
    elif output.kind == "json" and not path.name.lower().endswith(".json"):
        raise OutputError(f"{option} {path} should be a .json file (for example {path.name}.json).")


def _identity(path: Path) -> Optional[Tuple[int, int]]:
    try:
        status = os.stat(path)  # follows symbolic links: a link to an input is that input
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _input_files(entry: Input) -> Iterable[Path]:
    if entry.path.is_dir():
        return (path for path in entry.path.rglob("*") if path.is_file())
    return (entry.path,) if entry.path.exists() else ()


def _name_key(path: Path) -> str:
    return str(path.resolve(strict=False)).casefold()


def check_outputs(planned: Sequence[Output], read: Sequence[Input] = ()) -> None:
    """Refuse, before any work: an output path that is not writable as its kind (an existing
    folder for a file, no image suffix), an output that is (or would land inside) an input, and
    two outputs on one path. OutputError names the options and the files."""
    for output in planned:
        _check_kind(output)
    seen: Dict[str, Output] = {}
    seen_files: Dict[Tuple[int, int], Output] = {}
    for output in planned:
        key = _name_key(output.path)
        identity = _identity(output.path) if output.kind != "folder" else None
        other = seen.get(key) or (seen_files.get(identity) if identity else None)
        if other is not None:
            exact = other.path.resolve(strict=False) == output.path.resolve(strict=False)
            same = "the same path" if exact else "one file on a case-insensitive disk (macOS, Windows) or by a link"
            raise OutputError(f"{other.option} {other.path} and {output.option} {output.path} are {same}: one "
                              "output would overwrite the other. Give each output its own name.")
        seen[key] = output
        if identity:
            seen_files[identity] = output
    input_files: Dict[object, Tuple[Input, Path]] = {}
    for entry in read:
        for path in _input_files(entry):
            identity = _identity(path)
            if identity:
                input_files.setdefault(identity, (entry, path))
                # Another case of an input's name is that input on a case-insensitive disk.
                input_files.setdefault(_name_key(path), (entry, path))
    for output in planned:
        same_file = input_files.get(_identity(output.path))
        found = same_file or input_files.get(_name_key(output.path))
        if found is not None:
            entry, path = found
            which = f"the input {entry.option} {entry.path}" if path == entry.path else \
                f"{path}, a file of the input {entry.option} {entry.path}"
            how = "is" if same_file else "differs only in case from, so on a case-insensitive disk (macOS, Windows) is,"
            raise OutputError(f"{output.option} {output.path} {how} {which}: writing it would destroy the input. "
                              f"Choose another name for {output.option}.")
        target = output.path.resolve(strict=False)
        for entry in read:
            if entry.sealed and entry.path.is_dir() and target.is_relative_to(entry.path.resolve()):
                raise OutputError(f"{output.option} {output.path} lies inside the input folder {entry.option} "
                                  f"{entry.path}, which must stay as it is ({entry.sealed}). Write it elsewhere.")
