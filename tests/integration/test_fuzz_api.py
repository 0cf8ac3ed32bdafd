"""Schemathesis fuzzes every operation of the OpenAPI schema (CI-sized): no 5xx, and every response
conforms to the schema's own description (status code, content type, headers, body).

The longer pass is `python bench/fuzz_long.py` (several thousand cases). The caller is a
superuser's bearer token with write scope, so requests get past authentication and reach the
services; anonymous and low-role access is the access matrix's job (tests/security/).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, Phase, settings

from governance.registry.services.access import service_account_create
from governance.registry.services.deployments import environment_create
from governance.registry.services.registry import model_register, model_version_register, team_create
from governance.wsgi import application
from tests.fixtures import team_writer

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ_LOG = os.environ.get("FUZZ_LOG", "")  # bench/fuzz_long.py counts the cases through this file

pytestmark = pytest.mark.fuzz

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

# What a response must satisfy. Not `positive_data_acceptance`: a random model name is rightly 404.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


def seed_fuzz_world(identity: str) -> str:
    """A team, a model with a version, environments, and the token of `identity` (returned):
    `superuser` reads everything (admins and superusers register nothing, so most writes answer
    403 to it); `pipeline` is the team's data-scientist service account, whose writes reach the
    registry, approval, deployment and lineage services."""
    team = team_create(by="system:fuzz", name="fuzz-team")
    writer = team_writer(team)
    model = model_register(by=writer, name="fuzz-model", team=team, risk_tier="minimal")
    model_version_register(model=model, by=writer, label="1.0.0", artifact_uri="s3://fuzz/1/",
                           manifest={"model.bin": "a" * 64})
    environment_create(by="system:fuzz", name="staging", is_production=False)
    if identity == "pipeline":
        _, token = service_account_create(by="system:fuzz", name="fuzz-pipeline", role="data_scientist",
                                          models=[model])
        return token
    account, token = service_account_create(by="system:fuzz", name="fuzzer", role="admin")
    get_user_model().objects.filter(pk=account.user_id).update(is_superuser=True)
    return token


@pytest.fixture(params=["superuser", "pipeline"])
def fuzz_token(db, request):  # type: ignore[no-untyped-def]
    # Calls go straight to the WSGI app, which would close the test's connection after each
    # request; Django's own test client detaches these handlers the same way.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield seed_fuzz_world(request.param)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_fuzz_no_5xx_and_responses_match_schema(case, fuzz_token):
    response = case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_token}"}, checks=CHECKS)
    if FUZZ_LOG:
        with open(FUZZ_LOG, "a") as log:
            log.write(f"{case.operation.label} {response.status_code}\n")
