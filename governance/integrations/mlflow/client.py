"""MLflow's REST API, read and written with httpx: the registry, runs and the artifact proxy.

No ORM and no settings here: the caller passes the base URL, the credentials and the timeout.
Every failure to talk to MLflow is one `MlflowError` (with `status` when MLflow answered).
Artifacts are hashed while they stream, so a big file never sits in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
PAGE_SIZE = 200
CHUNK_BYTES = 1024 * 1024


class MlflowError(Exception):
    """MLflow could not be reached, refused the request, or answered something unexpected."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


@dataclass
class MlflowClient:
    base_url: str
    token: str = ""
    username: str = ""
    password: str = ""
    timeout_s: float = 30.0
    max_artifact_bytes: int = 20 * 1024 ** 3
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    def _client(self) -> httpx.Client:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            auth = httpx.BasicAuth(self.username, self.password) if self.username else None
            self._http = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers, auth=auth,
                                      timeout=self.timeout_s, transport=self.transport, follow_redirects=False)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> MlflowClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              json: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._client().request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise MlflowError(f"MLflow is unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise MlflowError(f"MLflow answered {response.status_code} to {method} {path}: "
                              f"{str(body.get('message', ''))[:200]}", status=response.status_code,
                              error_code=str(body.get("error_code", "")))
        try:
            data = response.json() if response.content else {}
        except ValueError as exc:
            raise MlflowError(f"MLflow answered {method} {path} with something that is not JSON.") from exc
        if not isinstance(data, dict):
            raise MlflowError(f"MLflow answered {method} {path} with a JSON {type(data).__name__}.")
        return data

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            page = self._call("GET", path, params={**params, "max_results": PAGE_SIZE,
                                                    **({"page_token": token} if token else {})})
            yield from page.get(key) or []
            token = page.get("next_page_token") or ""
            if not token:
                return

    # --- registry -----------------------------------------------------------------------------
    def registered_models(self) -> Iterator[dict[str, Any]]:
        return self._pages(f"{API}/registered-models/search", "registered_models", {})

    def registered_model(self, name: str) -> dict[str, Any] | None:
        """The model with its aliases; None when MLflow has no model of that name."""
        try:
            found = self._call("GET", f"{API}/registered-models/get", params={"name": name}).get("registered_model")
        except MlflowError as exc:
            if exc.status == 404 or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        if not isinstance(found, dict):
            raise MlflowError("registered-models/get answered without a registered_model.")
        return found

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a model (search returns no aliases: mlflow #16734; `run_id` may be empty)."""
        escaped = name.replace("'", "\\'")
        return list(self._pages(f"{API}/model-versions/search", "model_versions", {"filter": f"name='{escaped}'"}))

    def model_version(self, name: str, version: str) -> dict[str, Any]:
        data = self._call("GET", f"{API}/model-versions/get", params={"name": name, "version": version})
        return data.get("model_version") or {}

    def download_uri(self, name: str, version: str) -> str:
        data = self._call("GET", f"{API}/model-versions/get-download-uri", params={"name": name, "version": version})
        return str(data.get("artifact_uri") or "")

    def run(self, run_id: str) -> dict[str, Any] | None:
        try:
            found = self._call("GET", f"{API}/runs/get", params={"run_id": run_id}).get("run")
        except MlflowError as exc:
            if exc.status == 404 or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return found if isinstance(found, dict) else None

    def alias_set(self, name: str, alias: str, version: str) -> None:
        self._call("POST", f"{API}/registered-models/alias", json={"name": name, "alias": alias, "version": version})

    def alias_delete(self, name: str, alias: str) -> None:
        self._call("DELETE", f"{API}/registered-models/alias", json={"name": name, "alias": alias})

    def webhook_create(self, *, name: str, url: str, secret: str, events: list[tuple[str, str]]) -> dict[str, Any]:
        body = {"name": name, "url": url, "secret": secret, "status": "ACTIVE",
                "events": [{"entity": entity.upper(), "action": action.upper()} for entity, action in events]}
        return self._call("POST", f"{API}/webhooks", json=body).get("webhook") or {}

    # --- artifacts ------------------------------------------------------------------------------
    def manifest(self, artifact_uri: str) -> dict[str, str]:
        """{relative path: SHA-256 hex} of every file under an `mlflow-artifacts:` URI (the artifact proxy)."""
        root = artifact_root(artifact_uri)
        manifest: dict[str, str] = {}
        pending = [""]
        while pending:
            prefix = pending.pop()
            listing = self._call("GET", ARTIFACTS_API, params={"path": f"{root}/{prefix}".rstrip("/")})
            for item in listing.get("files") or []:
                # The proxy names entries relative to the listed folder; keep only the last part.
                name = str(item.get("path", "")).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
                if name in ("", ".", ".."):
                    raise MlflowError(f"The artifact listing holds an unsafe path {item.get('path')!r}.")
                relative = f"{prefix}/{name}".lstrip("/")
                if item.get("is_dir"):
                    pending.append(relative)
                else:
                    manifest[relative] = self._hash_file(f"{root}/{relative}")
        return dict(sorted(manifest.items()))

    def _hash_file(self, path: str) -> str:
        digest = hashlib.sha256()
        size = 0
        url = f"{ARTIFACTS_API}/{quote(path, safe='/')}"
        try:
            with self._client().stream("GET", url) as response:
                if response.status_code >= 400:
                    raise MlflowError(f"MLflow answered {response.status_code} to GET {url}", status=response.status_code)
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_artifact_bytes:
                        raise MlflowError(f"Artifact {path} is larger than {self.max_artifact_bytes} bytes.")
                    digest.update(chunk)
        except httpx.HTTPError as exc:
            raise MlflowError(f"Downloading artifact {path} failed: {type(exc).__name__}") from exc
        return digest.hexdigest()


def artifact_root(artifact_uri: str) -> str:
    """The artifact proxy path of `mlflow-artifacts:/<path>` (or `mlflow-artifacts://host/<path>`)."""
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        raise MlflowError(f"Only mlflow-artifacts: URIs (the tracking server's artifact proxy) can be hashed, "
                          f"not {parts.scheme or 'a bare path'}.", error_code="UNSUPPORTED_ARTIFACT_URI")
    path = parts.path.strip("/")
    if not path or ".." in path.split("/"):
        raise MlflowError(f"Artifact URI {artifact_uri!r} names no safe path.", error_code="UNSUPPORTED_ARTIFACT_URI")
    return path


def tags_dict(tags: Any) -> dict[str, str]:
    """MLflow's `[{"key", "value"}]` (REST) or `{key: value}` (webhooks) as a plain sorted dict."""
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in sorted(tags.items())}
    return dict(sorted((str(t.get("key")), str(t.get("value", ""))) for t in tags or [] if isinstance(t, dict)))


def aliases_dict(aliases: Any) -> dict[str, str]:
    return dict(sorted((str(a.get("alias")), str(a.get("version"))) for a in aliases or [] if isinstance(a, dict)))
