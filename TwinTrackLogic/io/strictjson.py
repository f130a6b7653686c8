"""The one strict JSON reader for every file TwinTrack reads back.

Calibrators, bundle manifests, evaluation reports and session files all come
through :func:`read_json`. It refuses, before or while parsing and always with
the file's name and the JSON path of the offending value (``members[1].window``):

- files larger than the caller's limit (checked on the size before a byte is parsed);
- nesting deeper than :data:`MAX_DEPTH` levels (Python's parser would recurse
  until it fails after a few thousand);
- duplicate keys in one object (``json`` keeps the last one silently);
- integers of more than :data:`MAX_INTEGER_DIGITS` digits (Python's own limit
  of 4,300 digits raises a bare ValueError) and numbers that overflow to infinity (``1e999``);
- ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON;
- text that is not UTF-8.

What the structure must be is the job of :mod:`TwinTrackLogic.schemas`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union, cast

from ..errors import InputError

MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 18  # every integer TwinTrack stores fits in a signed 64-bit integer
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

PathPart = Union[str, int]


class JsonFileError(InputError):
    """A JSON file that is not valid, strict JSON (or does not fit the limits)."""


def json_path(parts: Sequence[PathPart]) -> str:
    """``("members", 1, "window")`` -> ``members[1].window``; the top level is ``(top level)``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "(top level)"


class _Refused:
    """A value the parser met that strict JSON refuses; reported with its path after parsing."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _Pairs(dict):
    """An object that had duplicate keys (``json`` would keep the last one silently)."""

    duplicates: List[str]


def _object(pairs):
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen, duplicates = set(), []
    for key, _ in pairs:
        if key in seen:
            duplicates.append(key)
        seen.add(key)
    marked = _Pairs(result)
    marked.duplicates = duplicates
    return marked


def _integer(text: str):
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        return _Refused(f"is an integer of {digits} digits; at most {MAX_INTEGER_DIGITS} are allowed")
    return int(text)


def _constant(name: str):
    return _Refused(f"is {name}, which is not JSON (write a finite number or null)")


def _refused(value: Any) -> Optional[str]:
    """Why a scalar is refused, or None; ``1e999`` parses to infinity and is caught here."""
    kind = type(value)
    if kind is float:
        return None if value - value == 0.0 else "is a number that overflows to infinity"
    if kind is _Refused:
        return value.problem
    return None


def _walk(value: Any, max_depth: int):
    """The first refused value in document order, as (path parts, problem), or None."""
    stack: List[Tuple[Any, Tuple[PathPart, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        problem = _refused(item)
        if problem is not None:
            return list(where), problem
        if not isinstance(item, (dict, list)):
            continue
        if len(where) >= max_depth:
            return list(where), f"is nested more than {max_depth} levels deep"
        if isinstance(item, _Pairs):
            return list(where) + [item.duplicates[0]], "appears twice in the same object; keep one"
        children = item.items() if isinstance(item, dict) else enumerate(item)
        containers = []
        for key, child in children:
            kind = type(child)
            if kind is dict or kind is list or kind is _Pairs:
                containers.append((child, where + (key,)))
            elif kind is float or kind is _Refused:
                problem = _refused(child)
                if problem is not None:
                    # A container earlier in this one may hold an earlier problem.
                    for earlier, path in containers:
                        found = _walk(earlier, max_depth - len(path))
                        if found is not None:
                            return list(path) + found[0], found[1]
                    return list(where) + [key], problem
        stack.extend(reversed(containers))
    return None


def _deep_path(text: str, max_depth: int) -> List[PathPart]:
    """Where nesting first goes past ``max_depth`` (for text too deep for Python's parser)."""
    parts: List[PathPart] = []
    containers: List[list] = []  # [kind, whether it has a part in ``parts`` now]
    last_string = '""'
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', text):
        symbol = token.group()
        if symbol.startswith('"'):
            last_string = symbol
        elif symbol in "[{":
            if len(containers) >= max_depth:
                return parts
            containers.append([symbol, symbol == "["])
            if symbol == "[":
                parts.append(0)
        elif not containers:
            continue
        elif symbol == ":":
            try:
                parts.append(json.loads(last_string))
            except ValueError:
                parts.append("?")
            containers[-1][1] = True
        elif symbol == ",":
            if containers[-1][0] == "[":
                parts[-1] = cast(int, parts[-1]) + 1  # an array's part is its index
            elif containers[-1][1]:
                parts.pop()
                containers[-1][1] = False
        else:  # ] or }
            if containers.pop()[1]:
                parts.pop()
    return parts


def parse_json(text: str, source: str, what: str = "JSON file", max_depth: int = MAX_DEPTH,
               hint: str = "") -> Any:
    """Strictly parse ``text``; ``source`` (a file name), ``what`` it is and ``hint`` (what to do)
    go into errors."""
    def fail(where: Sequence[PathPart], problem: str) -> JsonFileError:
        return JsonFileError(f"{source} is not a valid {what}: {json_path(where)} {problem}."
                             + (f" {hint}" if hint else ""))

    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_constant=_constant)
    except RecursionError:
        raise fail(_deep_path(text, max_depth), f"is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as error:
        raise JsonFileError(f"{source} is not valid JSON ({error.msg} at line {error.lineno}, column "
                            f"{error.colno})." + (f" {hint}" if hint else "")) from None
    except ValueError as error:  # anything else the parser's number handling raises
        raise JsonFileError(f"{source} is not valid JSON ({error}).") from None
    found = _walk(value, max_depth)
    if found is not None:
        raise fail(*found)
    return value


def read_json(path, what: str = "JSON file", max_bytes: int = DEFAULT_MAX_BYTES,
              max_depth: int = MAX_DEPTH, hint: str = "") -> Any:
    """Read and strictly parse the JSON file ``path`` (see the module docstring).

    what: what the file is, for messages ("calibrator", "bundle manifest");
    max_bytes: the size limit, checked before reading; hint: what to do, appended to errors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file (expected a {what})."
                         + (f" {hint}" if hint else ""))
    size = path.stat().st_size
    if size > max_bytes:
        raise JsonFileError(f"{path} is not a valid {what}: it is {size / 1e6:.1f} MB, more than any {what} "
                            f"needs ({max_bytes / 1e6:.0f} MB); it was not read." + (f" {hint}" if hint else ""))
    with open(path, "rb") as stream:
        data = stream.read(max_bytes + 1)  # the file may have grown since stat
    if len(data) > max_bytes:
        raise JsonFileError(f"{path} is more than {max_bytes / 1e6:.0f} MB; it was not read.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise JsonFileError(f"{path} is not valid JSON (a valid {what} is UTF-8 text): it is not UTF-8 text (byte {error.start} is "
                            f"{data[error.start:error.start + 1]!r})." + (f" {hint}" if hint else "")) from None
    return parse_json(text, str(path), what, max_depth, hint)
