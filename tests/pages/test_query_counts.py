"""No N+1: each page runs a fixed number of queries, however many versions, requests or entries it shows.

Each page is measured twice, with a small and a larger data set, and must run the same, fixed
number of queries both times.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit import ledger
from audit.models import LedgerEntry
from governance.registry.services.approvals import approval_decide, model_version_submit
from governance.registry.services.deployments import deployment_record

pytestmark = pytest.mark.django_db

# Queries per page for a signed-in user (session and user lookups included), measured after one
# warm-up request (content types and the like are cached per process). The fairness parts add
# their own fixed number.
FAIRNESS_DASHBOARD = 2  # policies with an audit age limit; failing audits
MONITORING_DASHBOARD = 2  # open monitoring alerts (model, version and monitor joined in); revalidation overdue
FAIRNESS_MODEL_PAGE = 6  # specs, shown result (x2), trend, recent runs, roles
# monitors of the shown version (exists + list), open alerts, the acknowledge permission, revalidation
# overdue (one query); plus one query of runs per monitor shown (at most 5; this world has none)
MONITORING_MODEL_PAGE = 5
MLFLOW = 1  # alias violations of the visible models (mlflow), on the dashboard and the model page
EXPECTED = {
    # pending requests walked by expiry, then checked and fetched
    "dashboard_approver": 12 + FAIRNESS_DASHBOARD + MONITORING_DASHBOARD + MLFLOW,
    "dashboard_auditor": 10 + FAIRNESS_DASHBOARD + MONITORING_DASHBOARD + MLFLOW,
    "models": 6,
    # includes the lineage graph walk (lineage.selectors), one query for which of its nodes the user may see
    # and one for the teams whose lineage the user reads and records for (lineage.visibility.owners_of)
    "model_page": 17 + FAIRNESS_MODEL_PAGE + MONITORING_MODEL_PAGE + MLFLOW,
    "ledger": 5,
    # includes the witnesses' cosignatures of the checkpoint shown
    "ledger_entry": 11,
    # session, user, the model (team-scoped), the comparisons listed (versions and author joined in)
    "comparisons": 6,
    "comparison": 6,
}


def _compare(model, count: int) -> None:
    """`count` comparisons between the model's two oldest versions (rows only: the page reads them)."""
    from django.utils import timezone

    from governance.monitoring.models import Comparison

    champion, challenger = model.versions.order_by("pk")[:2]
    now = timezone.now()
    metric = {"champion": 0.8, "challenger": 0.85, "difference": 0.05, "ci": [0.01, 0.09], "replicates_defined": 100}
    for _ in range(count):
        Comparison.objects.create(
            champion=champion, challenger=challenger, window_start=now, window_end=now,
            batches=[{"id": 1, "sha256": "ab" * 32, "version": champion.label},
                     {"id": 2, "sha256": "cd" * 32, "version": challenger.label}],
            result={"n": 100, "task": "classification", "metrics": {"accuracy": metric, "brier": {**metric, "ci": None}},
                    "bootstrap": {"method": "paired percentile", "replicates": 100, "seed": 0, "confidence": 0.95},
                    "rows": {"champion": 100, "challenger": 100, "paired": 100, "with_outcome": 100},
                    "columns": {"y_true": "label", "y_pred": "", "score": "score", "id": "prediction_id"}},
            result_sha256="ef" * 32, ledger_seq=1)


def first_comparison(model) -> int:
    from governance.monitoring.models import Comparison

    return Comparison.objects.filter(champion__model=model).order_by("pk").values_list("pk", flat=True)[0]


def _grow(model, make_version, scientist, approver, approver2, risk_officer, environments, start: int, count: int):
    """Add `count` versions, each submitted, with decisions, and deployed to staging."""
    for number in range(start, start + count):
        version = make_version(f"{number}.0.0")
        request = model_version_submit(version=version, by=scientist, comment=f"round {number}")
        approval_decide(request=request, by=approver, decision="approve", comment="ok")
        if number % 2:
            approval_decide(request=request, by=approver2, decision="approve", comment="ok too")
            approval_decide(request=request, by=risk_officer, decision="approve", comment="risk ok")
        deployment_record(version=version, environment=environments["staging"], by=scientist)
    ledger.checkpoint_create()


def _count(client: Client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.fixture
def world(model, make_version, scientist, approver, approver2, risk_officer, auditor, environments, policy):
    return {"model": model, "grow": lambda start, count: _grow(model, make_version, scientist, approver, approver2,
                                                                risk_officer, environments, start, count)}


def test_every_page_runs_a_fixed_number_of_queries(world, approver, auditor, django_assert_num_queries):
    model = world["model"]
    world["grow"](1, 2)
    _compare(model, 2)
    approver_client, auditor_client = Client(), Client()
    approver_client.force_login(approver)
    auditor_client.force_login(auditor)
    seq = LedgerEntry.objects.filter(action="model_version.registered").order_by("seq").values_list("seq", flat=True)[0]
    pages = {
        "dashboard_approver": (approver_client, "/"),
        "dashboard_auditor": (auditor_client, "/"),
        "models": (auditor_client, "/models/"),
        "model_page": (auditor_client, f"/models/{model.name}/"),
        "ledger": (auditor_client, "/ledger/?action=approval_request."),
        "ledger_entry": (auditor_client, f"/ledger/{seq}/"),
        "comparisons": (auditor_client, f"/models/{model.name}/comparisons/"),
        "comparison": (auditor_client, f"/models/{model.name}/comparisons/{first_comparison(model)}/"),
    }
    small = {name: _count(client, url) for name, (client, url) in pages.items()}
    assert small == EXPECTED
    world["grow"](3, 6)
    _compare(model, 8)
    for name, (client, url) in pages.items():
        client.get(url)
        with django_assert_num_queries(EXPECTED[name]):
            assert client.get(url).status_code == 200
