"""A real MLflow tracking server for the integration test, from a separate virtualenv cached in the
user's cache folder (`$XDG_CACHE_HOME` or ~/.cache, `governance-tests/`; `MLFLOW_TEST_VENV` overrides),
so a fresh clone does not reinstall MLflow: `mlflow` is not a dependency of the service, which
talks to its REST API only.

The first run installs the pinned `mlflow` and scikit-learn (about 80 s and 860 MB); later runs reuse
the environment. The server: SQLite backend, a temporary artifact root, one worker, no job
execution, loopback only, webhooks allowed to a private http address (the live test server).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MLFLOW_VERSION = "3.17.2"
SKLEARN_VERSION = "1.9.1"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "governance-tests"
VENV = Path(os.environ.get("MLFLOW_TEST_VENV") or _CACHE / f"mlflow-{MLFLOW_VERSION}-sklearn-{SKLEARN_VERSION}")
INSTALLED_MARK = VENV / ".installed"

# Run by the MLflow venv's python: two versions of a small scikit-learn model, and for each the
# SHA-256 of every artifact file as MLflow itself downloads it (the independent check).
LOG_MODELS = r'''
import hashlib, json, os, sys, tempfile
import mlflow, numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri(sys.argv[1])
X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]]); y = np.array([0, 0, 0, 1, 1, 1])
digests = {}
for number, c in enumerate((1.0, 0.5), start=1):
    with mlflow.start_run(run_name=f"train-{number}") as run:
        mlflow.log_param("C", c)
        mlflow.sklearn.log_model(LogisticRegression(C=c).fit(X, y), name="model", registered_model_name=sys.argv[2])
    uri = MlflowClient().get_model_version_download_uri(sys.argv[2], str(number))
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
        files = {}
        for root, _, names in os.walk(local):
            for name in names:
                path = os.path.join(root, name)
                files[os.path.relpath(path, local).replace(os.sep, "/")] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    digests[str(number)] = {"run_id": run.info.run_id, "files": files}
print(json.dumps(digests))
'''


def ensure_venv() -> Path:
    """The cached MLflow virtualenv's python (installed once)."""
    python = VENV / "bin" / "python"
    if INSTALLED_MARK.exists() and python.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs on one machine (a CI run beside a developer's) must not build it at once.
    with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (INSTALLED_MARK.exists() and python.exists()):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}",
                            f"scikit-learn=={SKLEARN_VERSION}"], check=True, timeout=900)
            INSTALLED_MARK.write_text(f"mlflow=={MLFLOW_VERSION} scikit-learn=={SKLEARN_VERSION}\n")
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_server(folder: Path, timeout_s: float = 180) -> Iterator[str]:
    """Start `mlflow server` and yield its base URL; stop its whole process group afterwards."""
    mlflow_bin = ensure_venv().parent / "mlflow"
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
           "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true"}
    for key in [k for k in env if k.startswith(("DJANGO_", "PYTEST", "DATABASE_URL"))]:
        env.pop(key)
    log_path = folder / "mlflow-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts"), "--workers", "1"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"mlflow server exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start in {timeout_s} s: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield base
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)


def log_two_versions(tracking_uri: str, model_name: str) -> dict[str, dict]:
    import json

    python = ensure_venv()
    out = subprocess.run([str(python), "-c", LOG_MODELS, tracking_uri, model_name], check=True, capture_output=True,
                         text=True, timeout=600, env={k: v for k, v in os.environ.items()
                                                      if not k.startswith(("DJANGO_", "PYTEST"))})
    return json.loads(out.stdout.strip().splitlines()[-1])
