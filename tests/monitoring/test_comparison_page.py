"""The champion/challenger page of a model: the comparisons listed, one shown with per metric the
champion and challenger values, the difference and its CI (a table and a server-drawn forest plot),
the window, n, the digests and the ledger entry. Team-scoped: another team's comparison is a 404."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from governance.monitoring import charts
from governance.monitoring.services.comparisons import comparison_run
from tests.monitoring.test_comparison_service import shadow  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def compared(shadow, scientist):  # type: ignore[no-untyped-def]  # noqa: F811
    champion, challenger, _ = shadow
    first = comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label", score="score",
                           replicates=40, seed=1)
    second = comparison_run(by=scientist, champion=champion, challenger=challenger, y_true="label", score="score",
                            replicates=60, seed=2)
    return first, second


def test_the_page_lists_comparisons_and_shows_the_newest(compared, scientist, version):
    first, second = compared
    page = _client(scientist).get(f"/models/{version.model.name}/comparisons/").content.decode()
    listed = re.findall(r'href="/models/[^/]+/comparisons/(\d+)/"', page)
    assert listed == [str(second.pk), str(first.pk)]
    assert f"Comparison #{second.pk}: 2.0.0 (challenger) vs 1.0.0 (champion)" in page
    assert f"n = {second.result['n']}</strong>" in page and "n = 300" in page
    assert second.result_sha256 in page and f"#{second.ledger_seq} (comparison.completed)" in page
    assert "60 replicates, seed 2, 95% interval" in page
    for batch in second.batches:
        assert batch["sha256"] in page
    auc = second.result["metrics"]["roc_auc"]
    row = re.search(r'<tr id="metric-roc_auc">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]
    assert f"{auc['champion']:.4f}" in row and f"{auc['challenger']:.4f}" in row
    assert f"{auc['difference']:.4f}" in row
    assert f"[{auc['ci'][0]:.4f}, {auc['ci'][1]:.4f}]" in row
    assert "challenger better" in row  # the stronger challenger: the whole CI above 0
    assert 'class="difference-forest"' in page and 'class="zero-line"' in page
    assert page.count('class="forest-row"') == len(second.result["metrics"])


def test_one_comparison_is_shown_by_its_id(compared, scientist, version):
    first, _ = compared
    page = _client(scientist).get(f"/models/{version.model.name}/comparisons/{first.pk}/").content.decode()
    assert f"Comparison #{first.pk}:" in page and "40 replicates, seed 1" in page and first.result_sha256 in page


def test_another_teams_comparison_is_a_404(compared, version, make_user, other_team, scientist):
    from governance.registry.services.registry import model_register

    first, _ = compared
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    client = _client(outsider)
    assert client.get(f"/models/{version.model.name}/comparisons/").status_code == 404
    assert client.get(f"/models/{version.model.name}/comparisons/{first.pk}/").status_code == 404
    # Their own model's page does not show it either.
    theirs = model_register(by=outsider, name="hiring-ranker", team=other_team, risk_tier="limited",
                            description="", intended_purpose="", affected_groups=[], contacts=[])
    assert client.get(f"/models/{theirs.name}/comparisons/{first.pk}/").status_code == 404
    assert client.get(f"/models/{theirs.name}/comparisons/").status_code == 200
    assert _client(scientist).get(f"/models/{version.model.name}/comparisons/999999/").status_code == 404


def test_the_model_pages_monitoring_section_links_to_it(scientist, version):
    page = _client(scientist).get(f"/models/{version.model.name}/").content.decode()
    assert f'href="/models/{version.model.name}/comparisons/"' in page
    empty = _client(scientist).get(f"/models/{version.model.name}/comparisons/").content.decode()
    assert 'id="no-comparisons"' in empty


def test_forest_verdicts_follow_the_direction_of_each_metric():
    rows = [charts.Difference("roc_auc", 0.05, (0.01, 0.09), lower_is_better=False),
            charts.Difference("brier", 0.02, (0.005, 0.04), lower_is_better=True),
            charts.Difference("f1", -0.01, (-0.03, 0.02), lower_is_better=False),
            charts.Difference("mae", -0.2, (-0.3, -0.1), lower_is_better=True),
            charts.Difference("precision", None, None, lower_is_better=False)]
    assert [charts.difference_verdict(row) for row in rows] == ["challenger", "champion", "unclear", "challenger",
                                                                 "unclear"]
    svg = charts.difference_forest(rows, title="t <&>", confidence=0.9)
    assert svg.count('class="forest-row"') == 4 and "undefined on this window" in svg
    assert "t &lt;&amp;&gt;" in svg and "90% paired bootstrap CI" in svg
    # The zero line sits where 0 falls on the axis: from -0.3 to 0.09, padded by 8 % of the span.
    low, high = -0.3 - 0.39 * 0.08, 0.09 + 0.39 * 0.08
    zero_x = 90 + (760 - 90 - 200) * (0 - low) / (high - low)
    assert f'x1="{zero_x:.1f}" y1="28" x2="{zero_x:.1f}"' in svg
    assert charts.difference_forest([], title="none", confidence=0.95).count("no metric was defined") == 1
