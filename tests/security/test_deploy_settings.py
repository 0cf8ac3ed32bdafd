"""Production settings pass `check --deploy`; responses carry the security headers and cookie flags."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from tests.conftest import REPO_ROOT


def _production_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "SECURE_SSL_REDIRECT", "SECURE_COOKIES"}}
    env.update({"DJANGO_SETTINGS_MODULE": "governance.settings_production", "SECRET_KEY": secrets.token_urlsafe(64),
                "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


def test_check_deploy_is_clean_with_production_settings():
    completed = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                               cwd=REPO_ROOT, env=_production_env(), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "no issues" in completed.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = _production_env()
    env.pop("SECRET_KEY")
    completed = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0 and "SECRET_KEY" in completed.stderr


def test_production_settings_refuse_debug():
    completed = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=_production_env(DEBUG="true"),
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0 and "DEBUG" in completed.stderr


# Runs in a child process so the production settings are loaded as they would be in production.
_PROBE = r"""
import json, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
plain = client.get("/admin/login/")
page = client.get("/admin/login/", secure=True)
api = client.get("/api/models/", secure=True)
print(json.dumps({
    "plain_status": plain.status_code, "plain_location": plain.get("Location", ""),
    "headers": {name: page.get(name, "") for name in ("Strict-Transport-Security", "X-Content-Type-Options",
                "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")},
    "api_headers": {name: api.get(name, "") for name in ("X-Content-Type-Options", "X-Frame-Options")},
    "csrf_cookie": {key: str(value) for key, value in page.cookies["csrftoken"].items()} if "csrftoken" in page.cookies else {},
    "session": {"secure": __import__("django.conf").conf.settings.SESSION_COOKIE_SECURE,
                "httponly": __import__("django.conf").conf.settings.SESSION_COOKIE_HTTPONLY,
                "samesite": __import__("django.conf").conf.settings.SESSION_COOKIE_SAMESITE},
}))
"""


def test_security_headers_and_cookie_flags_in_production():
    completed = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                               env=_production_env(ALLOWED_HOSTS="testserver"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    assert probe["plain_status"] == 301 and probe["plain_location"].startswith("https://")
    headers = probe["headers"]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "includeSubDomains" in headers["Strict-Transport-Security"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert probe["api_headers"] == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    cookie = probe["csrf_cookie"]
    # The probe sends the morsel's flags as strings.
    assert (cookie["secure"], cookie["httponly"], cookie["samesite"]) == ("True", "True", "Lax")
    assert probe["session"] == {"secure": True, "httponly": True, "samesite": "Lax"}
