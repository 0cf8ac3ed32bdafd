"""Small formatting filters for the report template."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def num(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; an em dash for a missing (None) value."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{int(digits)}f}"
    return str(value)


@register.filter
def ci(value: Any) -> str:
    if not value:
        return "—"
    return f"[{value[0]:.3f}, {value[1]:.3f}]"


@register.filter
def compact(value: Any) -> str:
    """Short JSON for small structured values (parameters, policy snapshots)."""
    if value in (None, "", {}, []):
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def short(value: Any, length: int = 16) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= int(length) else text[: int(length)] + "…"


@register.filter
def label(value: Any) -> str:
    return str(value).replace("_", " ").capitalize()
