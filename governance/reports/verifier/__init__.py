"""The stand-alone verifier (`verify.py`) and its guide, as files of this repository.

The service publishes `verify.py` at `VERIFY_URL` from this file (never from a bundle), and shows
its SHA-256 on the keys page; the README states the same digest (a test keeps them equal).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

VERIFY_PY = Path(__file__).resolve().parent / "verify.py"
VERIFY_URL = "/verify.py"


def verify_py_bytes() -> bytes:
    return VERIFY_PY.read_bytes()


def verify_py_sha256() -> str:
    return hashlib.sha256(verify_py_bytes()).hexdigest()
