"""Fairness service/API/command tests reuse the governance fixtures (teams, users in roles, models, versions)."""

from tests.governance.conftest import (  # noqa: F401 (fixtures)
    approver,
    auditor,
    environments,
    make_user,
    make_version,
    model,
    other_team,
    policy,
    risk_officer,
    scientist,
    team,
    version,
)
