"""Page tests reuse the governance fixtures (teams, users in roles, models, versions, policies)."""

from tests.governance.conftest import (  # noqa: F401
    CARD,
    MANIFEST,
    SEED,
    approver,
    approver2,
    auditor,
    environments,
    make_user,
    make_version,
    model,
    other_team,
    pending,
    policy,
    risk_officer,
    scientist,
    scientist2,
    team,
    version,
)
