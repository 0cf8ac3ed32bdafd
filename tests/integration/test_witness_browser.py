"""*Verify here* in a real browser (Debian's chromium through Playwright): the witnesses that cosigned,
with their times, checked with Web Crypto; a changed cosignature byte fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from audit.keys import active_key
from audit.ledger import checkpoint_create, ledger_append
from audit.models import LedgerEntry, SigningKey, WitnessCosignature
from audit.witnesses import checkpoint_witness_latest
from tests.witness.helpers import WitnessProcess, witness_create

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile's install-test target installs it
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed at /usr/bin/chromium"))


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def witness(tmp_path: Path, settings) -> Iterator[WitnessProcess]:  # type: ignore[no-untyped-def]
    process = witness_create(tmp_path / "witness", name="demo-witness.localhost/not-independent")
    log_vkey = active_key(SigningKey.Purpose.CHECKPOINT).record.vkey
    assert process.run("add-log", "--origin", settings.LEDGER_ORIGIN, "--vkey", log_vkey).returncode == 0
    process.start()
    policy = tmp_path / "witnesses.policy"
    policy.write_text(f"log {log_vkey}\nwitness demo {process.vkey} {process.url}\nquorum demo\n")
    settings.WITNESS_POLICY_FILE = str(policy)
    yield process
    process.stop()


def test_verify_here_checks_the_witness_cosignatures(live_server, browser, witness, make_user, settings):
    entry = ledger_append(actor="system:test", action="test.changed", subject=("test.thing", "1"), payload={})
    checkpoint_create()
    assert [o.result for o in checkpoint_witness_latest(timeout_s=10)] == ["cosigned"]
    cosignature = WitnessCosignature.objects.get()
    auditor = make_user("audrey", "auditor")
    client = Client()
    client.force_login(auditor)
    context = browser.new_context()
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/ledger/{entry.seq}/")
    assert "not independent" in page.inner_text("#witness-cosignatures")
    page.click("#verify-button")
    page.wait_for_selector("#verify-result[data-outcome]")
    text = page.inner_text("#verify-result")
    assert page.get_attribute("#verify-result", "data-outcome") == "success", text
    when = cosignature.cosigned_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"Witness demo (demo, not independent) cosigned this checkpoint at {when}" in text

    page.reload()
    page.evaluate("""() => {
      const holder = document.getElementById('verify-data');
      const data = JSON.parse(holder.textContent);
      const lines = data.checkpoint_note.split('\\n');
      const index = lines.findIndex((line) => line.startsWith('\\u2014 demo-witness.localhost/'));
      const [prefix, encoded] = [lines[index].slice(0, lines[index].lastIndexOf(' ')),
                                 lines[index].slice(lines[index].lastIndexOf(' ') + 1)];
      const raw = atob(encoded);
      const flipped = raw.slice(0, 30) + String.fromCharCode(raw.charCodeAt(30) ^ 1) + raw.slice(31);
      lines[index] = prefix + ' ' + btoa(flipped);
      data.checkpoint_note = lines.join('\\n');
      holder.textContent = JSON.stringify(data);
    }""")
    page.click("#verify-button")
    page.wait_for_selector("#verify-result[data-outcome]")
    assert page.get_attribute("#verify-result", "data-outcome") == "failure"
    assert "cosignature by witness demo-witness.localhost/not-independent does not verify" in \
        page.inner_text("#verify-result")
    assert LedgerEntry.objects.filter(action="ledger.witness_refused").count() == 0
    context.close()
