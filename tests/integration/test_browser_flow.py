"""The whole review flow in a real browser (Debian's chromium through Playwright) against the live
server, with a real Celery worker on Redis for the long jobs:

a data scientist registers and submits a version; their own approval attempt is refused with the
SoD message shown; two approvers approve it in the admin with comments; it is deployed to
production; a fairness audit runs on the worker with its progress bar moving until the result shows (when the
fairness app is installed); an auditor exports a bundle, watches the progress bar until the download appears,
downloads it, and the bundle passes verify.py; "Verify here" succeeds for an intact entry and
fails for a tampered proof. Screenshots of every page at 1280 and 390 px go to /tmp/screens/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENS = Path("/tmp/screens")
WIDTHS = (1280, 390)
PASSWORD = "browser-pass-123456"

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile's install-test target installs it
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed at /usr/bin/chromium"))


# --- Fixtures: a Celery worker on the test database, a browser -----------------------------------

@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # plain synchronous code, so Django's async-safety guard does not apply.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def insecure_cookies(settings) -> None:
    """The live server speaks plain HTTP; production cookies are Secure."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


# --- Helpers ---------------------------------------------------------------------------------------

def sign_in(browser: Any, base_url: str, username: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    # Record every value the job progress bars take, to show they move.
    context.add_init_script("""
      window.__progress = [];
      new MutationObserver((records) => {
        for (const record of records) {
          const el = record.target;
          if (el.classList && el.classList.contains('job') && record.attributeName === 'data-progress') {
            window.__progress.push(Number(el.dataset.progress));
          }
        }
      }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-progress']});
    """)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def check_accessibility(page: Any) -> None:
    """Landmarks, a skip link reached first by keyboard, and a label on every control."""
    assert page.locator("header").count() == 1 and page.locator("main#main").count() == 1
    assert page.locator("footer").count() == 1 and page.locator("nav[aria-label=Main]").count() == 1
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
        'main input:not([type=hidden]), main select, main textarea, main button'))
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !(el.tagName === 'BUTTON' && el.textContent.trim())
                        && !(el.closest('label')))
        .map((el) => el.outerHTML.slice(0, 80))""")
    assert unlabelled == [], unlabelled
    first = page.evaluate("""() => document.querySelector(
        'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])').className""")
    assert first == "skip-link"
    # Focused, the skip link comes into view, with a visible focus outline.
    shown = page.evaluate("""() => { const link = document.querySelector('.skip-link'); link.focus();
        const box = link.getBoundingClientRect(); const style = getComputedStyle(link);
        const result = box.left >= 0 && style.outlineStyle !== 'none'; link.blur(); return result; }""")
    assert shown


def screenshot(page: Any, name: str) -> None:
    if "/admin/" not in page.url:
        check_accessibility(page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
        # Readable at this width: nothing makes the page scroll sideways (wide tables and the
        # lineage graph scroll inside their own boxes).
        overflow = page.evaluate("document.documentElement.scrollWidth")
        culprits = page.evaluate("""(width) => Array.from(document.querySelectorAll('body *'))
            .filter((el) => {
              if (el.getBoundingClientRect().right <= width + 1) return false;
              for (let up = el.parentElement; up; up = up.parentElement) {
                if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(up).overflowX)) return false;
              }
              return true;
            })
            .slice(0, 5).map((el) => el.tagName + '#' + el.id + '.' + el.getAttribute('class'))""", width)
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px: {culprits}"
    page.set_viewport_size(original)


def messages_text(page: Any) -> str:
    return page.inner_text("ul.messages") if page.locator("ul.messages").count() else ""


def build_world() -> dict[str, Any]:
    """Teams, people in roles, a high-risk model, its approval policy and the environments (not the flow)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from core.actor import acting_as
    from governance.registry.services.access import approver_scope_grant
    from governance.registry.services.approvals import approval_policy_set
    from governance.registry.services.deployments import environment_create
    from governance.registry.services.registry import model_register, team_create

    seed = "system:test_setup"
    team = team_create(by=seed, name="credit-risk")

    def person(username: str, *roles: str, in_team: bool = False) -> Any:
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
        with acting_as(seed):
            for role in roles:
                user.groups.add(Group.objects.get(name=role))
            if in_team:
                user.groups.add(team.group)
        return get_user_model().objects.get(pk=user.pk)

    # Dana builds models and may also approve high-risk ones: separation of duties must still stop her.
    dana = person("dana", "data_scientist", "approver", in_team=True)
    alice = person("alice", "approver")
    rita = person("rita", "risk_officer")
    audrey = person("audrey", "auditor")
    for approver in (dana, alice):
        approver_scope_grant(by=seed, to=approver, risk_tier="high")
    model = model_register(by=dana, name="credit-default-scorer", team=team, risk_tier="high",
                                    description="Probability of default for consumer loans",
                                    intended_purpose="Credit decisions", affected_groups=["applicants"])
    approval_policy_set(by=seed, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                                 required_card_fields=["intended_use", "limitations"], expiry_hours=48)
    environment_create(by=seed, name="staging", is_production=False)
    environment_create(by=seed, name="production", is_production=True)
    return {"model": model, "dana": dana, "alice": alice, "rita": rita, "audrey": audrey}


def fairness_spec(version: Any, by: Any, folder: Path) -> Any:
    """An audit of the version on 2,000 evaluation rows in which women are selected far less often."""
    import csv

    from governance.fairness.services.specs import audit_spec_create

    path = folder / "evaluation.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["y_true", "y_pred", "sex"])
        for index in range(2000):
            sex = "female" if index % 2 else "male"
            selected = (index % 8 == 1) if sex == "female" else (index % 4 in (0, 1))
            writer.writerow([int(index % 3 == 0), int(selected), sex])
    return audit_spec_create(
        by=by, model=version.model, name="selection parity by sex", version=version, y_true="y_true",
        y_pred="y_pred", sensitive=["sex"], dataset_path=path, thresholds={"impact_ratio": 0.8}, bootstrap=400,
        seed=7, min_group_size=10)


# --- The flow ------------------------------------------------------------------------------------

def test_review_flow_in_the_browser(live_server, browser, celery_worker_queue, insecure_cookies, tmp_path):
    from audit import ledger
    from audit.models import LedgerEntry
    from governance.models import ApprovalDecision, ApprovalRequest, Deployment, ModelVersion, VersionStatus

    world = build_world()
    base = live_server.url
    model_url = f"{base}/models/credit-default-scorer/"

    # 1. The data scientist registers a version in the admin and requests approval on the model page.
    dana = sign_in(browser, base, "dana")
    screenshot(dana, "dashboard-empty")
    dana.goto(f"{base}/admin/governance/modelversion/add/")
    dana.select_option("#id_model", label="credit-default-scorer")
    dana.fill("#id_label", "2.1.0")
    dana.fill("#id_artifact_uri", "s3://models/cds/2.1.0/")
    dana.fill("#id_manifest", json.dumps({"model.pkl": "a" * 64}))
    dana.fill("#id_framework", "sklearn")
    dana.fill("#id_training_metrics", json.dumps({"auc": 0.83}))
    dana.fill("#id_intended_use", "Score consumer credit applications.")
    dana.fill("#id_limitations", "Not for small-business loans.")
    dana.click("input[name=_save]")
    version = ModelVersion.objects.get(label="2.1.0")
    assert version.status == VersionStatus.DRAFT
    dana.goto(model_url)
    screenshot(dana, "model-draft")
    dana.fill(f"#submit-comment-{version.pk}", "Ready for review: AUC 0.83 on holdout")
    dana.click("#version-210 button[type=submit]")
    dana.wait_for_selector("text=Approval requested for 2.1.0.")
    request = ApprovalRequest.objects.get(version=version)
    assert request.submitted_by == world["dana"]

    # 2. Her own approval attempt is refused, and the page says why.
    before = LedgerEntry.objects.count()
    dana.check(f"#request-{request.pk} input[value=approve]")
    dana.fill(f"#decide-comment-{request.pk}", "looks good to me")
    dana.click(f"#request-{request.pk} button[type=submit]")
    dana.wait_for_selector(".message-error")
    refused = messages_text(dana)
    assert "someone else must decide it" in refused and "[approval_separation_of_duties]" in refused
    assert not ApprovalDecision.objects.exists() and LedgerEntry.objects.count() == before
    screenshot(dana, "model-sod-refused")

    # 3. Two approvers approve it in the admin queue, with comments.
    for username, comment in (("alice", "Evidence reviewed; calibration fine."),
                              ("rita", "Risk sign-off: within appetite.")):
        approver = sign_in(browser, base, username)
        approver.goto(f"{base}/admin/governance/approvalrequest/queue/")
        approver.click(f"#approval-queue a[href$='/{request.pk}/decide/?decision=approve']")
        approver.fill("#id_comment", comment)
        approver.click("input[type=submit][value='Record decision']")
        approver.wait_for_url(f"{base}/admin/governance/approvalrequest/queue/")
        assert "Decision recorded" in approver.inner_text("body")
        approver.context.close()
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    assert sorted(ApprovalDecision.objects.values_list("comment", flat=True)) == [
        "Evidence reviewed; calibration fine.", "Risk sign-off: within appetite."]

    # 4. It is deployed to production (admin), and the model page shows it.
    dana.goto(f"{base}/admin/governance/deployment/add/")
    dana.select_option("#id_version", label="credit-default-scorer:2.1.0")
    dana.select_option("#id_environment", label="production")
    dana.fill("#id_comment", "Go-live after approval")
    dana.click("input[name=_save]")
    deployment = Deployment.objects.get(version=version)
    assert deployment.is_active and deployment.environment.name == "production"
    dana.goto(model_url)
    row = dana.inner_text("#version-210")
    assert "Deployed to production" in row and "production" in row
    timeline = dana.inner_text("#timeline")
    assert "Evidence reviewed; calibration fine." in timeline and "Risk sign-off: within appetite." in timeline
    assert "alice" in timeline and "rita" in timeline
    screenshot(dana, "model-deployed")

    # 5. A fairness audit runs on the worker; the progress bar moves until the result shows.
    spec = fairness_spec(version, world["dana"], tmp_path)
    dana.goto(model_url)
    dana.select_option("#audit-spec", value=str(spec.pk))
    dana.click("#run-audit")
    dana.wait_for_selector("#audit-job")
    result_link = dana.wait_for_selector("#audit-result-link", timeout=120_000)
    progress = dana.evaluate("window.__progress")
    assert progress and progress[-1] == 100 and progress == sorted(progress), progress
    assert "Failing" in dana.inner_text("#audit-job") or "Passed" in dana.inner_text("#audit-job")
    result_link.click()
    dana.wait_for_selector("#audit-result")
    assert "failed thresholds" in dana.inner_text("#audit-result")
    assert dana.locator("#fairness svg").count() == 3  # rates with CIs, impact ratio vs 0.8, trend
    screenshot(dana, "model-audit-result")
    dana.context.close()

    # 6. The auditor exports a bundle; the progress bar moves until the download appears.
    ledger.checkpoint_create()
    audrey = sign_in(browser, base, "audrey")
    screenshot(audrey, "dashboard-auditor")
    audrey.goto(f"{base}/models/")
    screenshot(audrey, "models")
    audrey.goto(model_url)
    audrey.select_option("#export-version", value="2.1.0")
    audrey.click("#export-bundle")
    audrey.wait_for_selector("#bundle-job")
    screenshot(audrey, "model-export-started")
    download_link = audrey.wait_for_selector("#bundle-download", timeout=90_000)
    progress = audrey.evaluate("window.__progress")
    assert progress and progress[-1] == 100 and progress == sorted(progress), progress
    assert audrey.get_attribute("#bundle-progress", "value") == "100"
    screenshot(audrey, "model-export-done")
    with audrey.expect_download() as download_info:
        download_link.click()
    bundle_path = tmp_path / "bundle.zip"
    download_info.value.save_as(bundle_path)

    # 7. The downloaded bundle passes verify.py (stand-alone, its own process, clean folder), with
    # every server and pipeline key pinned as a regulator does (nothing pinned would be exit 3).
    from tests.reports.bundle_helpers import run_verify

    completed = run_verify(tmp_path, bundle_path.read_bytes())
    assert completed.returncode == 0, completed.stdout + completed.stderr

    # 8. "Verify here": success for an intact entry, failure for a tampered proof.
    ledger.checkpoint_create()
    approved = LedgerEntry.objects.filter(action="approval_request.approved").get()
    audrey.goto(f"{base}/ledger/?action=approval_request.")
    screenshot(audrey, "ledger")
    audrey.goto(f"{base}/ledger/{approved.seq}/")
    audrey.click("#verify-button")
    audrey.wait_for_selector("#verify-result[data-outcome]")
    assert audrey.get_attribute("#verify-result", "data-outcome") == "success", audrey.inner_text("#verify-result")
    assert "Verified" in audrey.inner_text("#verify-result")
    screenshot(audrey, "ledger-entry-verified")

    audrey.reload()
    audrey.evaluate("""() => {
      const holder = document.getElementById('verify-data');
      const data = JSON.parse(holder.textContent);
      const first = atob(data.proof_b64[0]);
      const flipped = String.fromCharCode(first.charCodeAt(0) ^ 1) + first.slice(1);
      data.proof_b64[0] = btoa(flipped);
      holder.textContent = JSON.stringify(data);
    }""")
    audrey.click("#verify-button")
    audrey.wait_for_selector("#verify-result[data-outcome]")
    assert audrey.get_attribute("#verify-result", "data-outcome") == "failure"
    assert "inclusion proof leads to root" in audrey.inner_text("#verify-result")
    screenshot(audrey, "ledger-entry-tampered")

    # A forged checkpoint signature fails too, for its own reason.
    audrey.reload()
    audrey.evaluate("""() => {
      const holder = document.getElementById('verify-data');
      const data = JSON.parse(holder.textContent);
      data.checkpoint_note = data.checkpoint_note.replace(/\\n(\\d+)\\n/, (m, size) => '\\n' + size + '\\n');
      const lines = data.checkpoint_note.split('\\n');
      lines[0] = lines[0] + 'x';
      data.checkpoint_note = lines.join('\\n');
      holder.textContent = JSON.stringify(data);
    }""")
    audrey.click("#verify-button")
    audrey.wait_for_selector("#verify-result[data-outcome]")
    assert audrey.get_attribute("#verify-result", "data-outcome") == "failure"
    assert "Ed25519 signature does not verify" in audrey.inner_text("#verify-result")
    audrey.context.close()
