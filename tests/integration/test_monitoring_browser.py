"""The model page's monitoring section in a real browser (Debian's chromium through Playwright)
against the live server: the drift heatmap and the performance chart with its threshold line are
drawn (screenshots at 1280 and 390 px in /tmp/screens/monitoring-*.png, checked for sideways
overflow and labelled controls), and an alert is acknowledged with a comment from the page. The
champion/challenger page draws its forest plot (screenshots /tmp/screens/comparisons-*.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_browser_flow import (  # noqa: F401 (fixtures)
    CHROMIUM,
    PASSWORD,
    browser,
    insecure_cookies,
    messages_text,
    screenshot,
    sign_in,
)
from tests.monitoring.test_comparison_service import shadow  # noqa: F401 (fixture)
from tests.monitoring.test_model_page import watched  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile's install-test target installs it
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed at /usr/bin/chromium"))


@pytest.fixture
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def test_monitoring_section_in_the_browser(_media, live_server, browser, insecure_cookies, watched, scientist,  # noqa: F811
                                           version):
    from audit.models import LedgerEntry
    from governance.monitoring.models import Alert

    scientist.set_password(PASSWORD)
    scientist.save(update_fields=["password"])
    page = sign_in(browser, live_server.url, scientist.username)
    page.goto(f"{live_server.url}/models/{version.model.name}/#monitoring")
    heatmap = page.locator("#monitoring svg.drift-heatmap")
    performance = page.locator("#monitoring svg.metric-lines")
    assert heatmap.count() == 1 and performance.count() == 1
    # Drawn, with a real size: one row per column (age, region) and one cell per run (3).
    box = heatmap.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    assert heatmap.locator("rect[stroke='#c0392b']").count() == 2  # the drifted cell and the legend's swatch
    assert performance.locator("line.threshold").count() == 1
    assert page.locator("#monitoring-alerts tbody tr").count() == 2
    screenshot(page, "monitoring")
    page.locator("#monitoring svg.drift-heatmap").screenshot(path="/tmp/screens/monitoring-heatmap.png")
    page.locator("#monitoring svg.metric-lines").screenshot(path="/tmp/screens/monitoring-performance.png")

    drift = Alert.objects.get(monitor=watched, kind="drift")
    page.fill(f"#ack-comment-{drift.pk}", "Age field unit fixed upstream")
    page.click(f"#alert-{drift.pk} button[type=submit]")
    page.wait_for_url(f"{live_server.url}/models/{version.model.name}/#monitoring")
    assert f"Alert #{drift.pk} acknowledged." in messages_text(page)
    assert page.locator("#monitoring-alerts tbody tr").count() == 1
    drift.refresh_from_db()
    assert drift.status == "acknowledged" and drift.comment == "Age field unit fixed upstream"
    assert LedgerEntry.objects.filter(action="alert.acknowledged", subject_id=str(drift.pk)).count() == 1


def test_champion_challenger_page_in_the_browser(_media, live_server, browser, insecure_cookies, shadow,  # noqa: F811
                                                 scientist, version):
    from governance.monitoring.services.comparisons import comparison_run

    champion, challenger, _ = shadow
    comparison = comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label",
                                score="score", replicates=200, seed=4)
    scientist.set_password(PASSWORD)
    scientist.save(update_fields=["password"])
    page = sign_in(browser, live_server.url, scientist.username)
    page.goto(f"{live_server.url}/models/{version.model.name}/")
    page.click("#comparisons-link a")
    page.wait_for_url(f"{live_server.url}/models/{version.model.name}/comparisons/")
    forest = page.locator("#comparison-forest svg.difference-forest")
    assert forest.count() == 1
    box = forest.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    metrics = comparison.result["metrics"]
    assert forest.locator("g.forest-row").count() == sum(1 for m in metrics.values() if m["difference"] is not None)
    assert forest.locator("line.zero-line").count() == 1
    assert page.locator("#comparison-metrics tbody tr").count() == len(metrics)
    assert page.inner_text("#comparison-n") == f"n = {comparison.result['n']}"
    screenshot(page, "comparisons")
    forest.screenshot(path="/tmp/screens/comparisons-forest.png")
