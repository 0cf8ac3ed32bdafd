"""governance.policies: the one home of "stricter", "weaker" and "does this audit conform"."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from governance.policies import metric_floors_clean, spec_gaps, stricter, weakenings

BASE = {"policy_id": 1, "scope": "tier:high", "quorum": 2, "required_roles": ["risk_officer"],
        "fairness_audit_max_age_days": 90, "required_card_fields": ["intended_use"], "expiry_hours": 72,
        "fairness_metric_floors": {"impact_ratio": {"min": 0.8}}, "fairness_min_group_size": 50,
        "fairness_dataset_registered": False, "risk_tier": "high"}


def test_stricter_takes_the_strictest_of_each_requirement():
    lax = {**BASE, "policy_id": 2, "scope": "tier:minimal", "quorum": 1, "required_roles": [],
           "fairness_audit_max_age_days": None, "required_card_fields": ["limitations"], "expiry_hours": 168,
           "fairness_metric_floors": {"impact_ratio": {"min": 0.9}, "equalized_odds_difference": {"max": 0.1}},
           "fairness_min_group_size": 30, "fairness_dataset_registered": True, "risk_tier": "minimal"}
    combined = stricter(lax, BASE)
    assert combined["quorum"] == 2
    assert combined["required_roles"] == ["risk_officer"]
    assert combined["required_card_fields"] == ["intended_use", "limitations"]
    assert combined["fairness_audit_max_age_days"] == 90
    assert combined["fairness_metric_floors"] == {"equalized_odds_difference": {"max": 0.1},
                                                  "impact_ratio": {"min": 0.9}}
    assert combined["fairness_min_group_size"] == 30
    assert combined["fairness_dataset_registered"] is True
    assert combined["expiry_hours"] == 72
    assert combined["risk_tier"] == "high"
    assert combined["combined_with"] == {"policy_id": 1, "scope": "tier:high"}
    # Symmetric in every requirement.
    assert {k: v for k, v in stricter(BASE, lax).items() if k not in ("policy_id", "scope", "combined_with")} == \
        {k: v for k, v in combined.items() if k not in ("policy_id", "scope", "combined_with")}


def test_stricter_of_differences_keeps_the_smaller_maximum():
    a = {**BASE, "fairness_metric_floors": {"demographic_parity_difference": {"max": 0.2}}}
    b = {**BASE, "fairness_metric_floors": {"demographic_parity_difference": {"max": 0.05}}}
    assert stricter(a, b)["fairness_metric_floors"] == {"demographic_parity_difference": {"max": 0.05}}


def test_stricter_without_a_current_policy_is_the_snapshot():
    assert stricter(BASE, None) == BASE


@pytest.mark.parametrize(("change", "weakened"), [
    ({"quorum": 1}, ["quorum"]),
    ({"required_roles": []}, ["required_roles"]),
    ({"required_card_fields": []}, ["required_card_fields"]),
    ({"fairness_audit_max_age_days": None}, ["fairness_audit_max_age_days"]),
    ({"fairness_audit_max_age_days": 365}, ["fairness_audit_max_age_days"]),
    ({"expiry_hours": 500}, ["expiry_hours"]),
    ({"fairness_min_group_size": 500}, ["fairness_min_group_size"]),
    ({"fairness_metric_floors": {}}, ["fairness_metric_floors.impact_ratio"]),
    ({"fairness_metric_floors": {"impact_ratio": {"min": 0.5}}}, ["fairness_metric_floors.impact_ratio"]),
    ({"quorum": 3, "fairness_metric_floors": {"impact_ratio": {"min": 0.9}}, "fairness_dataset_registered": True,
      "fairness_audit_max_age_days": 30, "expiry_hours": 24, "fairness_min_group_size": 20}, []),
])
def test_weakenings_name_what_gets_weaker(change, weakened):
    assert weakenings(BASE, {**BASE, **change}) == weakened


def test_dropping_registered_data_is_a_weakening_and_a_first_policy_is_not():
    assert weakenings({**BASE, "fairness_dataset_registered": True}, BASE) == ["fairness_dataset_registered"]
    assert weakenings(None, {**BASE, "quorum": 1}) == []


def test_spec_gaps_name_missing_and_weaker_metrics():
    policy = {**BASE, "fairness_metric_floors": {"impact_ratio": {"min": 0.8},
                                                 "equalized_odds_difference": {"max": 0.1}}}
    gaps = spec_gaps(policy, thresholds={"impact_ratio": 0.5}, min_group_size=30, include_small_groups=False,
                     registered_dataset=True)
    assert gaps == [{"gap": "metric_missing", "metric": "equalized_odds_difference", "policy": {"max": 0.1}},
                    {"gap": "metric_weaker", "metric": "impact_ratio", "policy": {"min": 0.8}, "spec": {"min": 0.5}}]
    assert spec_gaps(policy, thresholds={}, min_group_size=30, include_small_groups=False,
                     registered_dataset=True)[0]["gap"] == "metric_missing"
    assert spec_gaps(policy, thresholds={"impact_ratio": 0.85, "equalized_odds_difference": 0.05},
                     min_group_size=50, include_small_groups=False, registered_dataset=False) == []


def test_spec_gaps_group_size_and_registered_data():
    policy = {**BASE, "fairness_dataset_registered": True}
    thresholds = {"impact_ratio": 0.8}
    assert spec_gaps(policy, thresholds=thresholds, min_group_size=51, include_small_groups=False,
                     registered_dataset=True) == [{"gap": "min_group_size_larger", "policy": 50, "spec": 51}]
    # Comparing every group, small ones included, leaves nobody out.
    assert spec_gaps(policy, thresholds=thresholds, min_group_size=51, include_small_groups=True,
                     registered_dataset=True) == []
    assert spec_gaps(policy, thresholds=thresholds, min_group_size=50, include_small_groups=False,
                     registered_dataset=False) == [{"gap": "dataset_not_registered"}]


@pytest.mark.parametrize("raw", [
    {"no_such_metric": {"min": 0.8}},
    {"impact_ratio": {"max": 0.8}},  # a ratio takes a floor, not a ceiling
    {"equalized_odds_difference": {"min": 0.1}},
    {"impact_ratio": {"min": 1.5}},
    {"impact_ratio": 0.8},
    {"impact_ratio": {"min": True}},
    ["impact_ratio"],
])
def test_metric_floors_refuse_malformed_input(raw):
    with pytest.raises(InvalidInput) as error:
        metric_floors_clean(raw)
    assert error.value.code == "policy_bad_metric_floors"


def test_metric_floors_accept_known_metrics_in_their_direction():
    assert metric_floors_clean({"demographic_parity_ratio": {"min": 0.8}, "equalized_odds_difference": {"max": 0}}) \
        == {"demographic_parity_ratio": {"min": 0.8}, "equalized_odds_difference": {"max": 0.0}}
