"""An in-memory MLflow registry behind an httpx.MockTransport: the REST calls the integration makes,
answered the way MLflow 3.17.2 answers them (shapes checked against a real server). For unit tests
and bench/bench_mlflow.py; the integration test uses a real MLflow server instead."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from governance.integrations.mlflow.client import MlflowClient


@dataclass
class FakeVersion:
    version: str
    run_id: str
    files: dict[str, bytes]
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    current_stage: str = "None"
    # What search returns for `log_model` versions in some MLflow versions: no run id.
    run_id_in_search: bool = True
    source: str = ""  # fixed when logged, as MLflow's logged-model URI: a rename keeps it


@dataclass
class FakeModel:
    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    versions: dict[str, FakeVersion] = field(default_factory=dict)


class FakeMlflow:
    """Registry state plus a request log; `client()` gives an MlflowClient wired to it."""

    def __init__(self) -> None:
        self.models: dict[str, FakeModel] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    # --- set-up helpers ---------------------------------------------------------------------------
    def add_version(self, name: str, files: dict[str, bytes], *, run_id: str = "", **extra: Any) -> FakeVersion:
        model = self.models.setdefault(name, FakeModel(name=name))
        number = str(len(model.versions) + 1)
        while number in model.versions:
            number = str(int(number) + 1)
        version = FakeVersion(version=number, run_id=run_id, files=files, **extra)
        version.source = version.source or f"models:/m-{name}-{number}"
        model.versions[number] = version
        if run_id and run_id not in self.runs:
            self.runs[run_id] = {"info": {"run_id": run_id, "run_name": f"run-{run_id[:6]}", "experiment_id": "0",
                                          "status": "FINISHED", "start_time": 1796552790000,
                                          "end_time": 1796552794000},
                                 "data": {"params": [{"key": "C", "value": "1.0"}]}}
        return version

    def client(self) -> MlflowClient:
        return MlflowClient(base_url="http://mlflow.test", transport=httpx.MockTransport(self.handle))

    # --- REST -----------------------------------------------------------------------------------
    def _version_json(self, model: FakeModel, version: FakeVersion, *, search: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": model.name, "version": version.version, "current_stage": version.current_stage,
            "description": version.description, "source": version.source,
            "status": "READY", "tags": [{"key": k, "value": v} for k, v in version.tags.items()]}
        if version.run_id and (version.run_id_in_search or not search):
            body["run_id"] = version.run_id
        if not search:
            body["aliases"] = [a for a, v in model.aliases.items() if v == version.version]
        return body

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = dict(request.url.params)
        self.requests.append((request.method, path))
        api = "/api/2.0/mlflow/"
        artifacts = "/api/2.0/mlflow-artifacts/artifacts"
        if path == artifacts:
            return self._list(params.get("path", ""))
        if path.startswith(artifacts + "/"):
            return self._download(unquote(path[len(artifacts) + 1:]))
        if not path.startswith(api):
            return _error(404, "ENDPOINT_NOT_FOUND", path)
        route = (request.method, path[len(api):])
        body = json.loads(request.content) if request.content else {}
        if route == ("GET", "registered-models/search"):
            names = sorted(self.models)
            start = int(params.get("page_token") or 0)
            size = int(params.get("max_results") or 100)
            page = names[start:start + size]
            out: dict[str, Any] = {"registered_models": [{"name": n} for n in page]}
            if start + size < len(names):
                out["next_page_token"] = str(start + size)
            return httpx.Response(200, json=out)
        if route == ("GET", "registered-models/get"):
            model = self.models.get(params.get("name", ""))
            if model is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", "no such model")
            return httpx.Response(200, json={"registered_model": {
                "name": model.name, "description": model.description,
                "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
                "aliases": [{"alias": a, "version": v} for a, v in model.aliases.items()]}})
        if route == ("GET", "model-versions/search"):
            name = params.get("filter", "").removeprefix("name='").removesuffix("'").replace("\\'", "'")
            model = self.models.get(name)
            versions = [self._version_json(model, v, search=True) for v in model.versions.values()] if model else []
            return httpx.Response(200, json={"model_versions": versions})
        if route in (("GET", "model-versions/get"), ("GET", "model-versions/get-download-uri")):
            model = self.models.get(params.get("name", ""))
            version = model.versions.get(params.get("version", "")) if model else None
            if version is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", "no such version")
            if route[1].endswith("download-uri"):
                return httpx.Response(200, json={"artifact_uri": f"mlflow-artifacts:/models/{model.name}/{version.version}"})
            return httpx.Response(200, json={"model_version": self._version_json(model, version)})
        if route == ("GET", "runs/get"):
            run = self.runs.get(params.get("run_id", ""))
            return httpx.Response(200, json={"run": run}) if run else _error(404, "RESOURCE_DOES_NOT_EXIST", "no run")
        if route == ("POST", "registered-models/alias"):
            self.models[body["name"]].aliases[body["alias"]] = str(body["version"])
            return httpx.Response(200, json={})
        if route == ("DELETE", "registered-models/alias"):
            self.models[body["name"]].aliases.pop(body["alias"], None)
            return httpx.Response(200, json={})
        return _error(404, "ENDPOINT_NOT_FOUND", path)

    def _files(self, root: str) -> tuple[FakeVersion, str] | None:
        parts = root.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "models":
            return None
        model = self.models.get(parts[1])
        version = model.versions.get(parts[2]) if model else None
        return (version, "/".join(parts[3:])) if version else None

    def _list(self, root: str) -> httpx.Response:
        found = self._files(root)
        if found is None:
            return httpx.Response(200, json={})
        version, prefix = found
        prefix = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for name, data in version.files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix):].partition("/")
            entries[head] = {"path": head, "is_dir": True} if rest else {"path": head, "is_dir": False,
                                                                        "file_size": len(data)}
        return httpx.Response(200, json={"files": list(entries.values())})

    def _download(self, path: str) -> httpx.Response:
        found = self._files(path)
        if found is None or found[1] not in found[0].files:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", path)
        return httpx.Response(200, content=found[0].files[found[1]])


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": message})
