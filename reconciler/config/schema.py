"""Shape checks from the published JSON Schemas, with messages written for administrators.

The schemas in ``schemas/`` are the single source of the shape: editors use them through
``yaml-language-server`` and this module uses them through ``jsonschema``. Because the YAML
loader keeps numbers as text, the type checker lets a plain numeral stand for an ``integer``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from reconciler.errors import Finding
from reconciler.resources import schema_path

_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer",
    lambda checker, value: (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, str) and value.isascii() and value.isdigit())
    ),
)


def _numeral_aware(keyword: str) -> Any:
    """A range keyword that also applies to a plain numeral standing for an integer (the JSON
    Schema keywords skip anything that is not a number, so ``pin_length: 3`` would pass)."""
    original = Draft202012Validator.VALIDATORS[keyword]

    def check(validator: Any, bound: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and validator.is_type(instance, "integer"):
            instance = int(instance)
        return original(validator, bound, instance, schema)

    return check


_ECMA_SPACE = r"\t\n\x0b\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
r"""ECMA-262's ``\s`` (WhiteSpace and LineTerminator), as the inside of a character class."""
_ECMA_OUTSIDE_CLASS = {"$": r"\Z", ".": r"[^\n\r\u2028\u2029]"}


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    r"""``pattern`` with the meaning JSON Schema gives it (ECMA-262, no flags) in Python's engine.

    The difference that matters: Python's ``$`` also matches before a final newline, so
    ``^[0-9]{7}$`` would accept ``"1234567\n"`` and two users could share a conference ID.
    So outside a character class ``$`` becomes ``\Z`` and ``.`` excludes every ECMA line
    terminator (Python's only excludes ``\n``); ``\d``, ``\w`` and ``\b`` are ASCII (``re.ASCII``:
    Python's ``\d`` matches any Unicode digit, Arabic-Indic ones included) while ``\s`` is spelled
    out as ECMA's Unicode whitespace. The published schemas keep standard syntax for editors.
    """
    out, in_class, chars = [], False, iter(pattern)
    for char in chars:
        if char == "\\":
            char += next(chars, "")
            if char == r"\s":
                char = _ECMA_SPACE if in_class else f"[{_ECMA_SPACE}]"
            elif char == r"\S":
                if in_class:
                    raise ValueError(rf"{pattern!r}: \S inside a character class is not supported")
                char = f"[^{_ECMA_SPACE}]"
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        else:
            char = _ECMA_OUTSIDE_CLASS.get(char, char)
        out.append(char)
    return re.compile("".join(out), re.ASCII)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_RANGE_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    validators={**{k: _numeral_aware(k) for k in _RANGE_KEYWORDS}, "pattern": _ecma_pattern},
    type_checker=_TYPE_CHECKER,
)

_TYPE_WORDS = {
    "boolean": "true or false",
    "integer": "a whole number",
    "string": "text",
    "object": "a mapping of keys to values",
    "array": "a list",
    "null": "nothing",
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


@cache
def validator(name: str, definition: str | None = None) -> Any:
    """A validator for a whole schema file, or for one of its ``$defs`` (where ``#`` still means
    the whole file: a saved plan's ``plan`` is the file's root schema)."""
    schema = load_schema(name)
    if definition is None:
        return _Validator(schema)
    registry: Registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    return _Validator({"$ref": f"{schema['$id']}#/$defs/{definition}"}, registry=registry)


def check(
    data: Any, name: str, file: str, prefix: tuple = (), definition: str | None = None
) -> list[Finding]:
    """Every way ``data`` breaks the schema, as findings at their paths."""
    fast = fast_check(name, definition)
    if fast is not None and fast(data):
        return []
    findings: list[Finding] = []
    for error in validator(name, definition).iter_errors(data):
        findings.extend(_explain(error, file, prefix))
    return findings


_ANNOTATIONS = frozenset(
    {
        "description",
        "default",
        "patternErrorMessage",
        "title",
        "$schema",
        "$id",
        "$defs",
        "examples",
    }
)
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}
Predicate = Callable[[Any], bool]


@cache
def fast_check(name: str, definition: str | None = None) -> Predicate | None:
    """A predicate that accepts only what the schema accepts, compiled from the schema for the
    hot path (one call per user of a 100k-user tenant). It answers "certainly valid" or "ask
    jsonschema", so messages always come from jsonschema; ``None`` when the schema uses a
    keyword this compiler does not know, and then jsonschema does all the work."""
    schema = load_schema(name)
    return _compile(schema["$defs"][definition] if definition else schema)


def _compile(schema: dict[str, Any]) -> Predicate | None:
    keywords = set(schema) - _ANNOTATIONS
    if set(schema.get("propertyNames", {})) <= _ANNOTATIONS:  # keys only described
        keywords.discard("propertyNames")
    if not keywords <= {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "maxLength",
    }:
        return None
    if {"properties", "additionalProperties", "required"} & keywords:
        return _compile_object(schema)
    return _compile_leaf(schema)


def _compile_object(schema: dict[str, Any]) -> Predicate | None:
    if schema.get("type", "object") != "object" or schema.get("additionalProperties") is not False:
        return None
    properties = {}
    for key, sub in schema.get("properties", {}).items():
        compiled = _compile(sub)
        if compiled is None:
            return None
        properties[key] = compiled
    required = frozenset(schema.get("required", ()))
    lookup = properties.get

    def check(value: Any) -> bool:
        if type(value) is not dict or not required.issubset(value):
            return False
        for key, item in value.items():
            predicate = lookup(key)
            if predicate is None or not predicate(item):
                return False
        return True

    return check


def _compile_leaf(schema: dict[str, Any]) -> Predicate | None:
    names = schema.get("type", [*_PY_TYPES, "integer"])
    names = names if isinstance(names, list) else [names]
    if not set(names) <= {*_PY_TYPES, "integer"}:
        return None
    types = tuple(t for n in names if n != "integer" for t in _PY_TYPES[n])
    integer = "integer" in names
    if not all(isinstance(o, str) for o in schema.get("enum", ())):
        return None
    allowed = frozenset(schema["enum"]) if "enum" in schema else None
    search = ecma_regex(schema["pattern"]).search if "pattern" in schema else None
    low, high = schema.get("minimum"), schema.get("maximum")
    ranged = low is not None or high is not None
    longest = schema.get("maxLength")

    def check(value: Any) -> bool:
        if not (isinstance(value, types) or (integer and _is_integer(value))):
            return False
        if allowed is not None and (type(value) is not str or value not in allowed):
            return False
        if search is not None and type(value) is str and search(value) is None:
            return False
        if longest is not None and type(value) is str and len(value) > longest:
            return False
        if ranged and _is_integer(value):
            number = int(value)
            return (low is None or number >= low) and (high is None or number <= high)
        return True

    return check


def _is_integer(value: Any) -> bool:
    return _TYPE_CHECKER.is_type(value, "integer")


def _explain(error: ValidationError, file: str, prefix: tuple) -> Iterator[Finding]:
    path = prefix + tuple(error.absolute_path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    kind, value = error.validator, error.instance
    name = f"{path[-1]}: " if path and isinstance(path[-1], str) else ""
    if "propertyNames" in error.absolute_schema_path:  # a key is wrong: point at it
        path, name = (*path, value), ""
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed)):
            yield Finding(file, (*path, key), _unknown_key(key, allowed), at_key=True)
    elif kind == "required":
        missing = error.message.split("'")[1]
        where = "this entry" if path else "the file"
        yield Finding(file, path, f"missing required key {missing!r} in {where}", at_key=True)
    elif (say := _MESSAGES.get(str(kind))) is not None:
        yield Finding(file, path, say(schema, value, name))
    else:
        yield Finding(file, path, error.message)


def _wrong_type(schema: dict[str, Any], value: Any, name: str) -> str:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    wanted = " or ".join(_TYPE_WORDS.get(t) or t for t in types)
    hint = ""
    if "boolean" in types and isinstance(value, str):
        hint = " (only true and false are booleans; yes/no/on/off are not)"
    return f"{name}expected {wanted}, got {_show(value)}{hint}"


def _not_allowed(schema: dict[str, Any], value: Any, name: str) -> str:
    options = schema["enum"]
    near = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{name}{_show(value)} is not allowed{hint}; allowed: " + ", ".join(map(str, options))


def _no_match(schema: dict[str, Any], value: Any, name: str) -> str:
    reason = schema.get("patternErrorMessage", f"must match {schema['pattern']}")
    return f"{name}{_show(value)} {reason}"


def _out_of_range(schema: dict[str, Any], value: Any, name: str) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    shown = value if isinstance(value, str) else _show(value)  # a numeral: no quotes
    if low is not None and high is not None:
        bounds = f"{low} to {high}"
    else:
        bounds = f"{low} or more" if low is not None else f"{high} or less"
    return f"{name}{shown} is out of range; allowed: {bounds}"


_MESSAGES: dict[str, Callable[[dict[str, Any], Any, str], str]] = {
    "type": _wrong_type,
    "enum": _not_allowed,
    "pattern": _no_match,
    "minimum": _out_of_range,
    "maximum": _out_of_range,
    "maxLength": lambda schema, _, name: f"{name}is longer than {schema['maxLength']} characters",
    "minItems": lambda schema, _, __: f"needs at least {schema['minItems']} item(s)",
}
"""What an administrator reads for each kind of schema error (others: jsonschema's message)."""


def _unknown_key(key: str, allowed: list[str]) -> str:
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)  # "lisence" → "license"
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}"


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
