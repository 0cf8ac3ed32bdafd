"""Two runs of a monitor at once, both raising alerts on a production version under `reapprove_on_alert`:
one re-approval, both alerts linked to it (real transactions, threads, PostgreSQL row locks)."""

from __future__ import annotations

import pytest

from audit.models import LedgerEntry
from governance.models import ApprovalRequest
from governance.monitoring.models import Alert
from governance.monitoring.services.monitors import monitor_run
from tests.governance.test_concurrency import run_together
from tests.monitoring.test_reapproval import _drifted_batch, _monitor, deployed  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_alerts_open_one_reapproval(deployed, scientist, risk_officer):  # noqa: F811
    monitor = _monitor(deployed, scientist, risk_officer)
    _drifted_batch(scientist, deployed)
    results = run_together(lambda: monitor_run(monitor=monitor, by=scientist),
                           lambda: monitor_run(monitor=monitor, by=scientist))
    assert not [r for r in results if isinstance(r, Exception)], results
    request = ApprovalRequest.objects.get(kind="reapproval")
    assert Alert.objects.count() == 2
    assert set(Alert.objects.values_list("reapproval_id", flat=True)) == {request.pk}
    assert LedgerEntry.objects.filter(action="approval_request.reapproval_opened").count() == 1
