"""Importing the settings writes nothing; the embedded key and folders appear when first needed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(code: str, var_dir: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update({"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "governance.settings", "PYTHONPATH": str(REPO)})
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_importing_the_settings_creates_no_file(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    run("import governance.settings", var_dir)
    assert not var_dir.exists()


def test_the_key_file_is_created_on_first_use_private_and_shared_by_processes(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    sign = ("import django; django.setup()\n"
            "from django.core import signing\n"
            "print(signing.dumps('x', salt='t'))")
    token = run(sign, var_dir)
    key_file = var_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 50
    # Another process reads the same key: what one signed, the other verifies.
    verify = ("import django; django.setup()\n"
              "from django.core import signing\n"
              f"print(signing.loads({token!r}, salt='t'))")
    assert run(verify, var_dir) == "x"
    assert (var_dir / "db.sqlite3").parent.is_dir()  # the app created the SQLite folder at setup
