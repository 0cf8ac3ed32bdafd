"""The site address in absolute links: FAIRNESS_PUBLIC_BASE_URL if set, else where `make run` serves (HOST, PORT)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from governance.settings import served_base_url

REPO = Path(__file__).resolve().parents[2]
WILDCARD = "0.0.0.0"  # noqa: S104 (a bind address as input, not a bind)


OWN_ADDRESS_VARIABLES = {"FAIRNESS_PUBLIC_BASE_URL", "WEBAUTHN_ORIGIN", "WEBAUTHN_RP_ID", "HOST", "PORT"}


def setting_with(tmp_path: Path, name: str, **variables: str) -> str:
    """A setting as a fresh process reads it, with exactly these of OWN_ADDRESS_VARIABLES in its environment."""
    env = {key: value for key, value in os.environ.items() if key not in OWN_ADDRESS_VARIABLES | {"SECRET_KEY"}}
    env.update({"VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(REPO), **variables})
    completed = subprocess.run([sys.executable, "-c", f"import governance.settings as s; print(s.{name})"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def base_url_with(tmp_path: Path, **variables: str) -> str:
    return setting_with(tmp_path, "FAIRNESS_PUBLIC_BASE_URL", **variables)


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("127.0.0.1", "8000", "http://127.0.0.1:8000"),
    ("localhost", "9123", "http://localhost:9123"),
    ("governance.example.org", "80", "http://governance.example.org:80"),
    (WILDCARD, "8080", "http://127.0.0.1:8080"),
    ("::", "8080", "http://[::1]:8080"),
    ("::1", "8001", "http://[::1]:8001"),
    ("[::1]", "8001", "http://[::1]:8001"),
    ("", "", "http://127.0.0.1:8000"),
])
def test_served_base_url_is_the_address_the_server_answers_on(host, port, expected):
    assert served_base_url(host, port) == expected


def test_unset_base_url_follows_the_port_make_run_serves_on(tmp_path):
    assert base_url_with(tmp_path, PORT="9123") == "http://127.0.0.1:9123"
    assert base_url_with(tmp_path, HOST=WILDCARD, PORT="8080") == "http://127.0.0.1:8080"
    assert base_url_with(tmp_path, FAIRNESS_PUBLIC_BASE_URL="", PORT="9123") == "http://127.0.0.1:9123"


def test_nothing_set_keeps_the_old_default(tmp_path):
    assert base_url_with(tmp_path) == "http://127.0.0.1:8000"


def test_an_explicit_base_url_wins_over_host_and_port(tmp_path):
    assert base_url_with(tmp_path, FAIRNESS_PUBLIC_BASE_URL="https://governance.example.org",
                         HOST=WILDCARD, PORT="9123") == "https://governance.example.org"


def test_the_passkey_origin_follows_the_port_unless_set(tmp_path):
    assert setting_with(tmp_path, "WEBAUTHN_ORIGIN") == "http://localhost:8000"
    assert setting_with(tmp_path, "WEBAUTHN_ORIGIN", PORT="9123") == "http://localhost:9123"
    assert setting_with(tmp_path, "WEBAUTHN_ORIGIN", WEBAUTHN_RP_ID="gov.example.org", PORT="9123") == (
        "http://gov.example.org:9123")
    assert setting_with(tmp_path, "WEBAUTHN_ORIGIN", WEBAUTHN_ORIGIN="https://gov.example.org", PORT="9123") == (
        "https://gov.example.org")


def test_run_all_exports_host_and_port_to_the_worker_and_beat():
    """The e-mails are sent by the Celery worker, so it must see the HOST and PORT gunicorn binds to."""
    script = (REPO / "bin" / "run-all").read_text()
    exported = script.index("export HOST PORT")
    assert script.index("PORT=${PORT:-8000}") < exported < script.index("celery -A governance worker")
