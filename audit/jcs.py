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

Anything else (non-integral floats below 1e-4, integral floats or integers beyond ±2**53,
non-ASCII keys, other types) goes through the reference `rfc8785` implementation.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_MAX_SAFE_INT = 2**53 - 1
_fast_encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                 allow_nan=False, check_circular=False)


class CanonicalizationError(ValueError):
    """The value cannot be represented as RFC 8785 JSON."""


_REPR_MIN = 1e-4  # below this, repr() uses an exponent where ECMAScript does not
_INTEGRAL_MAX = float(2**53)  # beyond this, an integral float's digits are not its int's

# _scan results
_NO, _YES, _YES_AFTER_INTEGRAL_FLOATS = 0, 1, 2


def _scan(value: Any) -> int:
    """Whether json.dumps gives the RFC 8785 bytes, possibly once integral floats become ints."""
    integral_floats = False
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            # Lone surrogates are not valid I-JSON; let the reference encoder refuse them.
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return _NO
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str or not key.isascii():
                    return _NO
                stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is bool or item is None:
            continue
        elif kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return _NO
        elif kind is float:
            magnitude = abs(item)
            if item.is_integer():  # False for inf and nan, which the reference refuses
                if magnitude > _INTEGRAL_MAX:
                    return _NO
                integral_floats = True
            elif not _REPR_MIN <= magnitude <= _INTEGRAL_MAX:  # also refuses nan and inf
                return _NO
        else:
            return _NO
    return _YES_AFTER_INTEGRAL_FLOATS if integral_floats else _YES


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
    verdict = _scan(value)
    if verdict == _YES:
        return _fast_encoder.encode(value).encode("utf-8")
    if verdict == _YES_AFTER_INTEGRAL_FLOATS:
        return _fast_encoder.encode(_integral_floats_to_ints(value)).encode("utf-8")
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc
