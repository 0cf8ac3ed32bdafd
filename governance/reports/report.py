"""Regulator-ready reports per model version (placeholder until the report module lands)."""

from __future__ import annotations

from typing import Any


def audit_files(audits: list[Any]) -> dict[str, bytes]:
    return {}


def report_files(plan: Any) -> dict[str, bytes]:
    return {}
