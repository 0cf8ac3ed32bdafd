"""Database ids from untrusted text: one parser for path segments, query parameters and form fields.

An id is 1 to 18 ASCII digits, so it always fits a BIGINT: a longer or malformed one is "no such
object" (a 404 with the caller's code), never a database error.
"""

from __future__ import annotations

from core.errors import NotFound

MAX_ID_DIGITS = 18
ID_REGEX = f"[0-9]{{1,{MAX_ID_DIGITS}}}"


def parse_id(raw: str | None) -> int | None:
    """The id `raw` spells, or None when it is not one."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > MAX_ID_DIGITS:
        return None
    return int(raw)


def object_id(raw: str, *, code: str) -> int:
    """The id in a path segment, or NotFound with `code` (a malformed id answers like an unknown one)."""
    parsed = parse_id(raw)
    if parsed is None:
        raise NotFound(f"No object with id {raw[:40]!r}.", code=code, extra={"id": raw[:40]})
    return parsed


class IdConverter:
    """URL converter for ids (registered as `rowid`, and as `seq` for ledger sequence numbers)."""

    regex = ID_REGEX

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
