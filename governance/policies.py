"""What makes one approval policy stricter than another: the one home of these comparisons.

Policies are compared as snapshots (`ApprovalPolicy.snapshot()`, frozen into each request):

* `stricter(a, b)`: the policy a decision applies, the stricter of the request's snapshot and the
  policy that applies to the model now (quorum max, union of roles and card fields, the strictest
  evidence, the higher risk tier);
* `weakenings(old, new)`: what a change would make weaker (it then takes a second risk officer);
* `spec_gaps(policy, ...)`: how an audit's frozen parameters fall short of the evidence a policy pins.

A metric floor is `{"min": x}` for a ratio (higher is fairer) and `{"max": x}` for a difference.
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidInput
from governance.fairness.models import MAX_THRESHOLDS, MIN_THRESHOLDS

TIER_RANK = {"minimal": 0, "limited": 1, "high": 2}
METRIC_BOUND = {name: "min" for name in MIN_THRESHOLDS} | {name: "max" for name in MAX_THRESHOLDS}


def tier_rank(tier: str | None) -> int:
    return TIER_RANK.get(tier or "", -1)


def higher_tier(a: str | None, b: str | None) -> str | None:
    return a if tier_rank(a) >= tier_rank(b) else b


def metric_floors_clean(raw: Any) -> dict[str, dict[str, float]]:
    """Check `{"metric": {"min"|"max": number}}`: known metrics, the bound their direction takes, 0..1."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > len(METRIC_BOUND):
        raise InvalidInput("'fairness_metric_floors' must be an object of metric -> {\"min\"|\"max\": number}.",
                           code="policy_bad_metric_floors", extra={"known": sorted(METRIC_BOUND)})
    floors: dict[str, dict[str, float]] = {}
    for metric, bound in raw.items():
        kind = METRIC_BOUND.get(metric)
        if kind is None:
            raise InvalidInput(f"Unknown fairness metric '{metric}'.", code="policy_bad_metric_floors",
                               extra={"metric": metric, "known": sorted(METRIC_BOUND)})
        value = bound.get(kind) if isinstance(bound, dict) and set(bound) == {kind} else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidInput(f"'{metric}' needs {{\"{kind}\": <number from 0 to 1>}}.",
                               code="policy_bad_metric_floors", extra={"metric": metric, "bound": kind})
        floors[metric] = {kind: float(value)}
    return floors


def _strictest_bound(metric: str, a: float, b: float) -> float:
    return max(a, b) if METRIC_BOUND[metric] == "min" else min(a, b)


def _floors_union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for metric in sorted(set(a) | set(b)):
        kind = METRIC_BOUND.get(metric, "min")
        values = [float(side[metric][kind]) for side in (a, b) if metric in side]
        merged[metric] = {kind: values[0] if len(values) == 1 else _strictest_bound(metric, *values)}
    return merged


def _min_not_none(a: int | None, b: int | None) -> int | None:
    """None means "not required"; any bound is stricter than none, the smaller the stricter."""
    present = [value for value in (a, b) if value is not None]
    return min(present) if present else None


def stricter(a: dict[str, Any], b: dict[str, Any] | None) -> dict[str, Any]:
    """The policy snapshot that holds both `a` and `b`: every requirement at the stricter of the two."""
    if not b:
        return dict(a)
    combined = dict(a)
    combined.update({
        "quorum": max(int(a.get("quorum") or 1), int(b.get("quorum") or 1)),
        "required_roles": sorted(set(a.get("required_roles") or []) | set(b.get("required_roles") or [])),
        "required_card_fields": sorted(set(a.get("required_card_fields") or [])
                                       | set(b.get("required_card_fields") or [])),
        "fairness_audit_max_age_days": _min_not_none(a.get("fairness_audit_max_age_days"),
                                                     b.get("fairness_audit_max_age_days")),
        "fairness_metric_floors": _floors_union(a.get("fairness_metric_floors") or {},
                                                b.get("fairness_metric_floors") or {}),
        "fairness_min_group_size": _min_not_none(a.get("fairness_min_group_size"), b.get("fairness_min_group_size")),
        "fairness_dataset_registered": bool(a.get("fairness_dataset_registered")
                                            or b.get("fairness_dataset_registered")),
        "expiry_hours": _min_not_none(a.get("expiry_hours"), b.get("expiry_hours")),
        "risk_tier": higher_tier(a.get("risk_tier"), b.get("risk_tier")),
        "signed_approval": _stricter_signed_approval(a.get("signed_approval"), b.get("signed_approval")),
    })
    if (b.get("policy_id"), b.get("scope")) != (a.get("policy_id"), a.get("scope")):
        combined["combined_with"] = {"policy_id": b.get("policy_id"), "scope": b.get("scope")}
    return combined


# What each `signed_approval` setting accepts; a policy is stricter the fewer ways it accepts.
SIGNED_APPROVAL_ACCEPTS = {"none": frozenset({"unsigned", "passkey", "dsse"}), "either": frozenset({"passkey", "dsse"}),
                           "passkey": frozenset({"passkey"}), "dsse": frozenset({"dsse"})}


def signed_approval_accepts(setting: str | None) -> frozenset[str]:
    return SIGNED_APPROVAL_ACCEPTS.get(setting or "none", SIGNED_APPROVAL_ACCEPTS["none"])


def _stricter_signed_approval(a: str | None, b: str | None) -> str:
    """What accepts only what both accept; passkey-only and DSSE-only share nothing, so the newer (b) holds."""
    both = signed_approval_accepts(a) & signed_approval_accepts(b)
    for setting, accepts in SIGNED_APPROVAL_ACCEPTS.items():
        if accepts == both:
            return setting
    return b or "none"


def requires_fairness_audit(policy: dict[str, Any]) -> bool:
    return policy.get("fairness_audit_max_age_days") is not None or bool(policy.get("fairness_metric_floors"))


def weakenings(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What `new` makes weaker than `old` (empty: the change only keeps or strengthens; no old policy: nothing)."""
    if not old:
        return []
    weaker: list[str] = []
    if int(new.get("quorum") or 1) < int(old.get("quorum") or 1):
        weaker.append("quorum")
    if set(old.get("required_roles") or []) - set(new.get("required_roles") or []):
        weaker.append("required_roles")
    if set(old.get("required_card_fields") or []) - set(new.get("required_card_fields") or []):
        weaker.append("required_card_fields")
    for name in ("fairness_audit_max_age_days", "fairness_min_group_size", "expiry_hours"):
        before, after = old.get(name), new.get(name)
        if before is not None and (after is None or after > before):
            weaker.append(name)
    if old.get("fairness_dataset_registered") and not new.get("fairness_dataset_registered"):
        weaker.append("fairness_dataset_registered")
    if signed_approval_accepts(new.get("signed_approval")) - signed_approval_accepts(old.get("signed_approval")):
        weaker.append("signed_approval")
    old_floors, new_floors = old.get("fairness_metric_floors") or {}, new.get("fairness_metric_floors") or {}
    for metric, bound in sorted(old_floors.items()):
        kind = METRIC_BOUND.get(metric, "min")
        if metric not in new_floors or _strictest_bound(metric, bound[kind], new_floors[metric][kind]) != \
                new_floors[metric][kind]:
            weaker.append(f"fairness_metric_floors.{metric}")
    return weaker


def spec_gaps(policy: dict[str, Any], *, thresholds: dict[str, float], min_group_size: int,
              include_small_groups: bool, registered_dataset: bool) -> list[dict[str, Any]]:
    """How an audit's frozen parameters are less strict than the policy; empty: they conform."""
    gaps: list[dict[str, Any]] = []
    for metric, bound in sorted((policy.get("fairness_metric_floors") or {}).items()):
        kind = METRIC_BOUND.get(metric, "min")
        floor = float(bound[kind])
        if metric not in thresholds:
            gaps.append({"gap": "metric_missing", "metric": metric, "policy": {kind: floor}})
        elif _strictest_bound(metric, floor, float(thresholds[metric])) != float(thresholds[metric]):
            gaps.append({"gap": "metric_weaker", "metric": metric, "policy": {kind: floor},
                         "spec": {kind: float(thresholds[metric])}})
    pinned_size = policy.get("fairness_min_group_size")
    if pinned_size is not None and not include_small_groups and min_group_size > pinned_size:
        gaps.append({"gap": "min_group_size_larger", "policy": pinned_size, "spec": min_group_size})
    if policy.get("fairness_dataset_registered") and not registered_dataset:
        gaps.append({"gap": "dataset_not_registered"})
    return gaps
