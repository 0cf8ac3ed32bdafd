"""Champion and challenger as a service and API: the rows both versions scored in the window,
paired by prediction id; the numbers equal the engine's on the paired rows; stored with digests
and a ledger entry; team-scoped; coded refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core.errors import InvalidInput
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.comparison import champion_challenger
from governance.monitoring.models import Comparison
from governance.monitoring.services.comparisons import comparison_run
from governance.monitoring.services.monitors import _canonical_sha256

pytestmark = pytest.mark.django_db

ROWS = 300


def _traffic(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, ROWS)
    champion = np.clip(label * 0.3 + rng.uniform(0, 0.7, ROWS), 0, 1)  # weaker
    challenger = np.clip(label * 0.6 + rng.uniform(0, 0.4, ROWS), 0, 1)  # stronger
    return label, champion, challenger


def _csv(ids: list[str], label: Any, score: Any) -> bytes:
    lines = ["prediction_id,label,score"] + [f"{i},{int(y)},{float(s)!r}" for i, y, s in zip(ids, label, score, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _upload(by: Any, version: Any, content: bytes, name: str) -> None:
    prediction_batch_upload(by=by, model=version.model, uploaded=SimpleUploadedFile(name, content),
                            served_version=version)


@pytest.fixture
def shadow(scientist, version, make_version):  # type: ignore[no-untyped-def]
    challenger = make_version("2.0.0")
    label, champ, chall = _traffic()
    ids = [f"r{i}" for i in range(ROWS)]
    _upload(scientist, version, _csv(ids, label, champ), "champion.csv")
    # The challenger's shadow batch: the same requests in another order, plus ten it alone scored.
    order = np.random.default_rng(9).permutation(ROWS)
    extra = [f"x{i}" for i in range(10)]
    _upload(scientist, challenger, _csv([ids[i] for i in order] + extra, [*label[order], *[0] * 10],
                                        [*chall[order], *[0.5] * 10]), "challenger.csv")
    return version, challenger, (label, champ, chall)


def test_pairs_the_rows_and_equals_the_engine_stored_and_recorded(shadow, scientist):
    champion, challenger, (label, champ, chall) = shadow
    comparison = comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label", score="score",
                                replicates=50, seed=3)
    expected = champion_challenger(label, {"score": champ}, {"score": chall}, n_boot=50, seed=3)
    assert comparison.result["metrics"] == expected["metrics"]
    assert comparison.result["rows"] == {"champion": ROWS, "challenger": ROWS + 10, "paired": ROWS,
                                         "with_outcome": ROWS}
    assert comparison.result["metrics"]["roc_auc"]["difference"] > 0
    low, high = comparison.result["metrics"]["roc_auc"]["ci"]
    assert 0 < low <= high
    entry = LedgerEntry.objects.get(action="comparison.completed")
    assert entry.seq == comparison.ledger_seq
    assert entry.payload["result_sha256"] == comparison.result_sha256 == _canonical_sha256(comparison.result)
    assert {b["version"] for b in entry.payload["batches"]} == {"1.0.0", "2.0.0"}
    reads = [e.payload for e in LedgerEntry.objects.filter(action="sealed_file.read")]
    assert sum(1 for p in reads if p["cause"] == f"champion/challenger comparison {comparison.pk}") == 2


def test_refusals_are_coded_and_write_nothing(shadow, scientist, make_version):
    champion, challenger, _ = shadow
    with pytest.raises(InvalidInput) as error:
        comparison_run(by=scientist, champion=champion, challenger=champion, y_true="label", score="score")
    assert error.value.code == "monitoring_not_comparable"
    with pytest.raises(InvalidInput) as error:
        comparison_run(by=scientist, champion=champion, challenger=make_version("3.0.0"), y_true="label",
                       score="score")
    assert error.value.code == "fairness_no_batches"
    with pytest.raises(InvalidInput) as error:
        comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label", score="score",
                       id_column="request")
    assert error.value.code == "monitoring_no_prediction_id"
    assert not Comparison.objects.exists()
    assert not LedgerEntry.objects.filter(action="comparison.completed").exists()


def test_the_api_is_team_scoped(shadow, scientist, make_user, other_team):
    body = {"model": shadow[0].model.name, "champion": "1.0.0", "challenger": "2.0.0", "y_true": "label",
            "score": "score", "replicates": 20}
    outsider = APIClient()
    outsider.force_authenticate(make_user("olga", "data_scientist", teams=(other_team,)))
    assert outsider.post("/api/monitoring/comparisons/", body, format="json").status_code == 404
    assert not Comparison.objects.exists()
    client = APIClient()
    client.force_authenticate(scientist)
    created = client.post("/api/monitoring/comparisons/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["challenger"] == "2.0.0" and created.json()["ledger_seq"] is not None
    assert client.get("/api/monitoring/comparisons/").json()["results"][0]["id"] == created.json()["id"]
    assert outsider.get("/api/monitoring/comparisons/").json()["results"] == []


def test_the_comparison_and_outcome_endpoints_are_in_the_openapi_schema(scientist):
    client = APIClient()
    client.force_authenticate(scientist)
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert set(paths["/api/monitoring/comparisons/"]) >= {"get", "post"}
    assert "post" in paths["/api/monitoring/outcomes/"]


def test_the_comparison_entry_is_in_the_bundle(shadow, scientist, tmp_path):
    from audit.ledger import checkpoint_create
    from tests.monitoring.test_evidence import _actions, _export
    from tests.reports.bundle_helpers import members, run_verify

    champion, challenger, _ = shadow
    comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label", score="score",
                   replicates=10)
    checkpoint_create()
    bundle = _export(tmp_path, champion.model.name)
    assert _actions(members(bundle)).count("comparison.completed") == 1
    assert run_verify(tmp_path, bundle).returncode == 0
