"""RFC 8785 (JCS) canonical JSON, with a fast path for the values the ledger writes.

The ledger hashes these bytes, so they must be exactly RFC 8785. For objects whose keys are
all ASCII, `json.dumps` with sorted keys and no whitespace produces the same bytes as JCS (same
key order, same string escaping), several times faster, as long as every number is written the
way ECMAScript's Number.prototype.toString writes it (RFC 8785 section 3.2.2.3):

- integers within ±2**53 are their decimal digits;
- a float with a fractional part and a magnitude of at least 1e-4 is Python's `repr`: both are
  the shortest digits that round-trip, and in that range both write them without an exponent
  (`repr` switches to one below 1e-4, ECMAScript only below 1e-6; no such float reaches 2**52);
- an integral float within ±2**53 is the decimal digits of its exact value (ECMAScript writes
  `100` for 100.0, and `0` for -0.0), so it is written as the equal int. Beyond 2**53 the
  shortest digits are padded with zeros (2**60 is written 1152921504606847000), unlike the int.

Strings are written by json.dumps exactly as RFC 8785 writes them (only `"`, `\\` and control
characters escaped, with the same short forms and lowercase `\\u00xx`), so they are not
inspected: a lone surrogate, which is not I-JSON, fails the final UTF-8 encoding instead.

Anything else (non-integral floats below 1e-4, integral floats or integers beyond ±2**53,
non-ASCII keys, lone surrogates, other types) goes through the reference `rfc8785` implementation.
tests/audit/test_jcs.py compares the two on generated values of every kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

import rfc8785

_MAX_SAFE_INT = 2**53 - 1
_fast_encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                 allow_nan=False, check_circular=False)


def _made_encoder() -> Callable[[Any], str]:
    """`_fast_encoder.encode` for containers, with json's C encoder made once.

    `JSONEncoder.encode` makes a new C encoder (and a closure) on every call, a third of the
    cost of encoding a small object. The one made here has `_fast_encoder`'s settings; it is
    used only if this Python's json module makes it with the arguments it takes in 3.11 and it
    encodes a probe exactly as `_fast_encoder` does; else `_fast_encoder.encode` is used.
    """
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return _fast_encoder.encode
    try:
        made = make(None, _fast_encoder.default, json_encoder.encode_basestring, None, ":", ",", True, False, False)
        probe: dict[str, Any] = {"b": [1, -0.5, None, True, False, "\u00e9\n\u2028\"", {}], "a": {"z": [], "y": 12.25}}
        if "".join(made(probe, 0)) != _fast_encoder.encode(probe):
            return _fast_encoder.encode
    except (TypeError, ValueError):
        return _fast_encoder.encode

    def encode(value: Any) -> str:
        return "".join(made(value, 0))

    return encode


_encode = _made_encoder()


class CanonicalizationError(ValueError):
    """The value cannot be represented as RFC 8785 JSON."""


_REPR_MIN = 1e-4  # below this, repr() uses an exponent where ECMAScript does not
_INTEGRAL_MAX = float(2**53)  # beyond this, an integral float's digits are not its int's

# _scan results
_NO, _YES, _YES_AFTER_INTEGRAL_FLOATS = 0, 1, 2


def _scan(value: Any) -> int:
    """Whether json.dumps gives the RFC 8785 bytes, possibly once integral floats become ints.

    Strings are not looked at: json.dumps escapes exactly what RFC 8785 escapes, and a lone
    surrogate (not valid I-JSON) makes the final UTF-8 encoding fail, which sends the value to
    the reference encoder (it refuses it).
    """
    kind = type(value)
    try:
        if kind is dict:
            return _scan_container(value, True)
        if kind is list or kind is tuple:
            return _scan_container(value, False)
    except RecursionError:  # nested deeper than the interpreter recurses: the reference encoder decides
        return _NO
    return _scan_container((value,), False)


def _scan_container(container: Any, is_dict: bool) -> int:
    verdict = _YES
    if is_dict:
        for key in container:
            if type(key) is not str or not key.isascii():
                return _NO
        children = container.values()
    else:
        children = container
    for child in children:
        kind = type(child)
        if kind is str or kind is bool or child is None:
            continue
        if kind is int:
            if -_MAX_SAFE_INT <= child <= _MAX_SAFE_INT:
                continue
            return _NO
        if kind is float:
            magnitude = abs(child)
            if child.is_integer():  # False for inf and nan, which the reference refuses
                if magnitude > _INTEGRAL_MAX:
                    return _NO
                verdict = _YES_AFTER_INTEGRAL_FLOATS
            elif not _REPR_MIN <= magnitude <= _INTEGRAL_MAX:  # also refuses nan and inf
                return _NO
            continue
        if kind is dict:
            inner = _scan_container(child, True)
        elif kind is list or kind is tuple:
            inner = _scan_container(child, False)
        else:
            return _NO
        if inner == _NO:
            return _NO
        if inner == _YES_AFTER_INTEGRAL_FLOATS:
            verdict = inner
    return verdict


def _integral_floats_to_ints(value: Any) -> Any:
    kind = type(value)
    if kind is float and value.is_integer():
        return int(value)
    if kind is dict:
        return {key: _integral_floats_to_ints(child) for key, child in value.items()}
    if kind is list or kind is tuple:
        return [_integral_floats_to_ints(child) for child in value]
    return value


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 bytes of a JSON value."""
    kind = type(value)
    if kind is str and value.isascii():
        return _fast_encoder.encode(value).encode("ascii")
    if value is None:
        return b"null"
    if kind is bool:
        return b"true" if value else b"false"
    if kind is int and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return str(value).encode("ascii")
    verdict = _scan(value)
    if verdict != _NO:
        try:
            return _encode(value if verdict == _YES else _integral_floats_to_ints(value)).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            pass  # a lone surrogate (the reference encoder refuses it), or nested too deep for the fast path
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc


def canonicalize_members(members: dict[str, Any]) -> bytes:
    """`canonicalize(members)` for an object with ASCII keys, each value object encoded once.

    An object's RFC 8785 form is its members sorted by key, each `"key":value` in its own RFC
    8785 form, joined by commas; with ASCII keys Python's order is RFC 8785's. A value that
    appears under several keys (the same object, e.g. a created row's state as both "after" and
    "state") is encoded once.
    """
    if not all(type(key) is str and key.isascii() for key in members):
        return canonicalize(members)
    encoded: dict[int, bytes] = {}
    parts = []
    for key in sorted(members):
        value = members[key]
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = canonicalize(value)
        name = _member_names.get(key)
        if name is None:
            name = canonicalize(key) + b":"
            if len(_member_names) < _MEMBER_NAMES_MAX:
                _member_names[key] = name
        parts.append(name + text)
    return b"{" + b",".join(parts) + b"}"


# `"key":` of the member names canonicalize_members has seen (a batch repeats a few), bounded.
_member_names: dict[str, bytes] = {}
_MEMBER_NAMES_MAX = 4096
