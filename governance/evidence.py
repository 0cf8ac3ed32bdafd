"""Pluggable evidence checks that approval policies require before a version can be approved.

Other apps provide the checks: the fairness sub-app registers `fairness_audit_passed`, which
answers "is there a passing fairness audit of this version younger than N days?". A check that
nobody registered counts as missing evidence (deny by default), never as passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FAIRNESS_AUDIT_PASSED = "fairness_audit_passed"


@dataclass(frozen=True)
class EvidenceResult:
    """The answer of one check: whether it passed, why, and references to the evidence used."""

    ok: bool
    message: str
    references: dict[str, Any] = field(default_factory=dict)
    code: str = "approval_evidence_missing"  # the error code a gate refuses with when not ok


# fn(*, version: ModelVersion, **params) -> EvidenceResult
EvidenceCheck = Callable[..., EvidenceResult]

_checks: dict[str, EvidenceCheck] = {}


def register_evidence_check(name: str, fn: EvidenceCheck) -> None:
    """Make `fn(*, version, **params) -> EvidenceResult` answer the evidence requirement `name`."""
    _checks[name] = fn


def unregister_evidence_check(name: str) -> None:
    _checks.pop(name, None)


def registered_evidence_checks() -> list[str]:
    return sorted(_checks)


def run_evidence_check(name: str, *, version: Any, **params: Any) -> EvidenceResult:
    """Run one check; a check that nobody registered is reported as not passed."""
    check = _checks.get(name)
    if check is None:
        return EvidenceResult(False, f"No provider is registered for evidence '{name}'.")
    result = check(version=version, **params)
    if not isinstance(result, EvidenceResult):
        return EvidenceResult(False, f"Evidence provider '{name}' returned no result.")
    return result
