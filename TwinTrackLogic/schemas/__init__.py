"""The structure of TwinTrack's files, declared once as JSON Schema, and a small validator.

``calibrator.schema.json`` and ``bundle.schema.json`` (this folder, shipped in the
package, documented in ``docs/schemas.md``) are standard JSON
Schema (draft 2020-12): any tool can check a file against them. :func:`validate` checks a
parsed document against one of them with the subset of keywords these schemas use, and
stops at the first problem with a message that names the file, the JSON path and the fix;
an unknown key is answered with the closest known one ("overlapp": did you mean "overlap"?).

Why our own validator rather than the ``jsonschema`` package: TwinTrack runs inside 3D
Slicer, where every runtime dependency is one more thing to install into Slicer's Python
(``jsonschema`` brings ``attrs``, ``referencing``, ``rpds-py`` with a compiled extension and
``jsonschema-specifications``), and its messages would still need rewriting to name the
path the way ours do and to suggest keys. The subset here is under 300 lines; the test
suite checks the schema files against the official metaschema and that this validator
agrees with ``jsonschema`` on valid and tampered files (``Testing/test_schemas.py``).

Differences from full JSON Schema, all stricter: ``integer`` means a JSON number written
without a fraction or exponent (``1.0`` is not an integer here), booleans are never numbers,
and a schema keyword this validator does not know is an error when the schema is loaded
(so a constraint can never be silently ignored).

Semantic rules a schema cannot say (knots strictly increasing, a channel below the channel
count, files inside the bundle) stay in the code that builds the object.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence

from ..errors import InputError
from ..io.strictjson import PathPart, json_path

SCHEMA_FILES = {"calibrator": "calibrator.schema.json", "bundle": "bundle.schema.json"}

_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples"}
_KEYWORDS = _ANNOTATIONS | {
    "$ref", "$defs", "type", "enum", "const", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "uniqueItems", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "allOf", "anyOf", "if", "then", "else",
    "maxProperties", "propertyNames",
}
_TYPE_NAMES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a finite number", "boolean": "true or false", "null": "null"}


class SchemaError(InputError):
    """A file whose structure does not match its schema."""


class _Problem(Exception):
    def __init__(self, where: Sequence[PathPart], text: str) -> None:
        super().__init__(text)
        self.where, self.text = list(where), text


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> Dict[str, Any]:
    """The schema ``name`` (a key of :data:`SCHEMA_FILES`), parsed and its keywords checked."""
    text = resources.files(__name__).joinpath(SCHEMA_FILES[name]).read_text(encoding="utf-8")
    schema = json.loads(text)
    _check_keywords(schema, name)
    return schema


def _check_keywords(schema: Any, name: str) -> None:
    if isinstance(schema, bool):
        return
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise RuntimeError(f"schema {name} uses keywords this validator does not implement: {sorted(unknown)}")
    for key in ("properties", "$defs"):
        for child in schema.get(key, {}).values():
            _check_keywords(child, name)
    for key in ("items", "additionalProperties", "if", "then", "else", "propertyNames"):
        if isinstance(schema.get(key), (dict, bool)):
            _check_keywords(schema[key], name)
    for key in ("allOf", "anyOf"):
        for child in schema.get(key, []):
            _check_keywords(child, name)


def validate(document: Any, name: str, source: str, hint: str = "") -> Any:
    """Check ``document`` against the schema ``name``; :class:`SchemaError` naming ``source``."""
    schema = load_schema(name)
    try:
        _Validator(schema).check(document, schema, [])
    except _Problem as problem:
        raise SchemaError(f"{source} is not a valid {schema.get('title', name)}: {json_path(problem.where)} "
                          f"{problem.text}." + (f" {hint}" if hint else "")) from None
    return document


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return value is None  # "null"


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Validator:
    def __init__(self, root: Dict[str, Any]) -> None:
        self.root = root

    def resolve(self, reference: str) -> Any:
        if not reference.startswith("#/"):
            raise RuntimeError(f"only local references are supported, not {reference}")
        node: Any = self.root
        for part in reference[2:].split("/"):
            node = node[part]
        return node

    def number_bounds(self, schema: Any):
        """(types, low, high) when ``schema`` only says "a number (integer) in [low, high]", else None."""
        while isinstance(schema, dict) and set(schema) == {"$ref"}:
            schema = self.resolve(schema["$ref"])
        if (not isinstance(schema, dict) or schema.get("type") not in ("number", "integer")
                or set(schema) - {"type", "minimum", "maximum", "description"}):
            return None
        types = (int, float) if schema["type"] == "number" else (int,)
        return types, schema.get("minimum", -math.inf), schema.get("maximum", math.inf)

    def matches(self, value: Any, schema: Any, where: List[PathPart]) -> bool:
        try:
            self.check(value, schema, where)
        except _Problem:
            return False
        return True

    def check(self, value: Any, schema: Any, where: List[PathPart]) -> None:
        if schema is True:
            return
        if schema is False:
            raise _Problem(where, "is not allowed here")
        if "$ref" in schema:
            self.check(value, self.resolve(schema["$ref"]), where)
        kinds = schema.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            if not any(_is_type(value, kind) for kind in kinds):
                wanted = " or ".join(_TYPE_NAMES[kind] for kind in kinds)
                raise _Problem(where, f"must be {wanted}, not {_show(value)}")
        if "const" in schema and not _equal(value, schema["const"]):
            why = f" ({schema['description']})" if "description" in schema else ""
            raise _Problem(where, f"must be {_show(schema['const'])}, not {_show(value)}{why}")
        if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
            options = ", ".join(_show(option) for option in schema["enum"])
            raise _Problem(where, f"is {_show(value)}; it must be one of {options}{_closest(value, schema['enum'])}")
        # Rules that join several keys (a method's parameters, a version's modes) come before the
        # keys one by one, so that the message names the rule rather than one of its symptoms.
        for child in schema.get("allOf", []):
            self.check(value, child, where)
        if "anyOf" in schema and not any(self.matches(value, child, where) for child in schema["anyOf"]):
            # Report against the first alternative: its message is the most useful one.
            self.check(value, schema["anyOf"][0], where)
        if "if" in schema:
            branch = schema.get("then") if self.matches(value, schema["if"], where) else schema.get("else")
            if branch is not None:
                self.check(value, branch, where)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.check_number(value, schema, where)
        if isinstance(value, str):
            self.check_string(value, schema, where)
        if isinstance(value, list):
            self.check_array(value, schema, where)
        if isinstance(value, dict):
            self.check_object(value, schema, where)

    @staticmethod
    def check_number(value, schema, where) -> None:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if ("minimum" in schema and value < schema["minimum"]
                or "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]
                or "maximum" in schema and value > schema["maximum"]
                or "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]):
            if low is not None and high is not None:
                interval = ("[" if "minimum" in schema else "(") + f"{low:g}, {high:g}" + (
                    "]" if "maximum" in schema else ")")
                raise _Problem(where, f"is {_show(value)}, outside {interval}")
            words = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most",
                     "exclusiveMaximum": "less than"}
            key = next(key for key in words if key in schema)
            raise _Problem(where, f"is {_show(value)}; it must be {words[key]} {schema[key]:g}")

    @staticmethod
    def check_string(value, schema, where) -> None:
        if len(value) < schema.get("minLength", 0):
            raise _Problem(where, f"must be a string of at least {schema['minLength']} character(s)")
        if len(value) > schema.get("maxLength", len(value)):
            raise _Problem(where, f"is a string of {len(value)} characters; at most {schema['maxLength']} are allowed")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise _Problem(where, f"is {_show(value)}, which is not {schema.get('description', 'of the right form')}")

    def check_array(self, value, schema, where) -> None:
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        if len(value) < low or (high is not None and len(value) > high):
            noun = "numbers" if schema.get("items", {}).get("type") in ("number", "integer") else "items"
            wanted = (f"exactly {low}" if low == high else f"at least {low}" if len(value) < low
                      else f"at most {high}")
            raise _Problem(where, f"holds {len(value)} {noun}; it must hold {wanted} {noun}")
        if "items" in schema:
            items = schema["items"]
            bounds = self.number_bounds(items)
            for index, item in enumerate(value):
                # Long lists of plain numbers (calibrator knots) take the fast test first.
                if bounds is not None and type(item) in bounds[0] and bounds[1] <= item <= bounds[2]:
                    continue
                self.check(item, items, where + [index])
        if schema.get("uniqueItems"):
            seen: List[Any] = []
            for index, item in enumerate(value):
                if any(_equal(item, other) for other in seen):
                    raise _Problem(where + [index], f"repeats {_show(item)}; every item must be different")
                seen.append(item)

    def check_object(self, value, schema, where) -> None:
        if len(value) > schema.get("maxProperties", len(value)):
            raise _Problem(where, f"holds {len(value)} keys; at most {schema['maxProperties']} are allowed")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        # Unknown keys first: a misspelt key is then reported as such, not as the key it should be.
        for key in value:
            if names is not None and not self.matches(key, names, where + [key]):
                raise _Problem(where + [key], f"is not an allowed key here ({names.get('description', '')})")
            if key not in properties and extra is False:
                known = ", ".join(f'"{name}"' for name in properties)
                raise _Problem(where + [key], f"is not a known key{_closest(key, list(properties))} "
                                              f"(known here: {known})")
        for key in schema.get("required", []):
            if key not in value:
                raise _Problem(where + [key], "is missing")
        for key, child in value.items():
            if key in properties:
                self.check(child, properties[key], where + [key])
            elif extra is not False:
                self.check(child, extra, where + [key])


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _closest(value: Any, options: Sequence[Any]) -> str:
    if not isinstance(value, str):
        return ""
    strings = [option for option in options if isinstance(option, str)]
    match = difflib.get_close_matches(value, strings, n=1, cutoff=0.6)
    if not match:
        folded = [option for option in strings if option.lower() == value.lower()]
        match = folded[:1]
    return f'; did you mean "{match[0]}"?' if match else ""


def closest(value: str, options: Sequence[str]) -> Optional[str]:
    """The option most like ``value`` (for suggestions elsewhere), or None."""
    found = _closest(value, options)
    return found.split('"')[1] if found else None
