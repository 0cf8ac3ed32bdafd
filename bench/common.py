"""What the benchmarks share: a fresh PostgreSQL database of their own and Django set up on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def recreate_database(name: str) -> None:
    """Drop and create the benchmark's own database on the local PostgreSQL (never the service's)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def django_setup(database: str, key_dir: str | Path, *, media_root: str | Path | None = None) -> None:
    """Point the service's settings at the benchmark database and private keys, then `django.setup()`."""
    os.environ["DATABASE_URL"] = f"{PG}/{database}"
    os.environ["LEDGER_SIGNING_KEY_FILE"] = f"{key_dir}/ledger.key"
    os.environ["ATTESTATION_SIGNING_KEY_FILE"] = f"{key_dir}/attestation.key"
    os.environ["DATA_KEK_FILE"] = f"{key_dir}/data.kek"
    if media_root is not None:
        os.environ["MEDIA_ROOT"] = str(media_root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
