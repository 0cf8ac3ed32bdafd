"""Fixtures of the signed-approval tests: a pending request under a policy's `signed_approval` setting."""

from __future__ import annotations

from typing import Any

import pytest

from governance.registry.services.approvals import approval_policy_set, model_version_submit
from tests.fixtures import CARD, SEED


def signed_policy(setting: str) -> Any:
    """The high-tier default policy: one approval, the model card, and `signed_approval` = `setting`."""
    return approval_policy_set(by=SEED, risk_tier="high", quorum=1, required_card_fields=list(CARD),
                               expiry_hours=48, signed_approval=setting)


@pytest.fixture
def request_under(version, scientist):  # type: ignore[no-untyped-def]
    def make(setting: str) -> Any:
        signed_policy(setting)
        return model_version_submit(version=version, by=scientist, comment="please review")
    return make
