"""RFC 8785 (JCS) canonical JSON, with a fast path for the values the ledger writes.

The ledger hashes these bytes, so they must be exactly RFC 8785. For objects whose keys are
all ASCII and whose numbers are integers within ±2**53, `json.dumps` with sorted keys and no
whitespace produces the same bytes as JCS (same key order, same string escaping), several
times faster. Anything else (floats, non-ASCII keys, huge integers) goes through the
reference `rfc8785` implementation.
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


def _fast_path_ok(value: Any) -> bool:
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
                    return False
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is bool or item is None:
            continue
        elif kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        else:
            return False
    return True


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 bytes of a JSON value."""
    if _fast_path_ok(value):
        return _fast_encoder.encode(value).encode("utf-8")
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc
