"""Helpers for bundle tests: build a ledger, build a bundle, run verify.py, and tamper with zips."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import dsse
from audit.keys import active_key
from audit.ledger import checkpoint_create, draft, ledger_append, ledger_append_many
from audit.models import SigningKey
from governance.reports.bundle import MANIFEST_PAYLOAD_TYPE, build_bundle

VERIFY_PY = Path(__file__).resolve().parents[2] / "governance" / "reports" / "verifier" / "verify.py"
SUBJECTS = [("test.model", "credit"), ("test.version", "credit-v1")]


def load_verifier() -> ModuleType:
    """verify.py loaded from its file, as the stand-alone module it is (not through our packages)."""
    spec = importlib.util.spec_from_file_location("bundle_verify_standalone", VERIFY_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_ledger() -> None:
    """Entries about the subjects, interleaved with unrelated ones, across two checkpoints."""
    for index in range(23):
        subject = SUBJECTS[index % 2] if index % 3 else ("test.other", str(index))
        ledger_append(actor="system:test", action="test.changed", subject=subject, payload={"index": index})
    checkpoint_create()
    ledger_append_many([draft(actor="system:test", action="test.bulk", subject=("test.other", f"b{index}"),
                              payload={"index": index}) for index in range(9)])
    ledger_append(actor="system:test", action="test.changed", subject=SUBJECTS[0], payload={"late": True})
    checkpoint_create()
    ledger_append(actor="system:test", action="test.unrelated", subject=("test.other", "tail"), payload={})
    checkpoint_create()


def sign_attestation(payload: dict[str, object], private_key: Ed25519PrivateKey | None = None) -> bytes:
    if private_key is None:
        loaded = active_key(SigningKey.Purpose.ATTESTATION)
        private_key, keyid = loaded.private_key, loaded.record.dsse_keyid
    else:
        keyid = dsse.envelope_keyid(private_key.public_key().public_bytes_raw())
    envelope = dsse.sign_envelope(json.dumps(payload).encode(), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                  private_key=private_key, keyid=keyid)
    return json.dumps(envelope).encode()


def make_bundle(subjects: list[tuple[str, str]] | None = None, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    build_bundle(subjects=subjects or SUBJECTS, out=buffer, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def pinned_key_args() -> list[str]:
    """`--trusted-key <vkey>` for every key the server has (what a regulator obtains out of band)."""
    return [arg for vkey in SigningKey.objects.order_by("pk").values_list("vkey", flat=True)
            for arg in ("--trusted-key", vkey)]


def run_verify(tmp_path: Path, bundle: bytes, *args: str, pin: bool = True) -> subprocess.CompletedProcess[str]:
    """Run verify.py as its own process, from a folder that holds nothing but it and the bundle.

    With `pin` (the default) and no `--trusted-key` among `args`, every server key is pinned.
    """
    folder = tmp_path / f"verify-{hashlib.sha256(bundle).hexdigest()[:12]}-{len(args)}-{int(pin)}"
    folder.mkdir(exist_ok=True)
    if pin and "--trusted-key" not in args:
        args = (*args, *pinned_key_args())
        # Pipelines' own keys, as a regulator saves them from GET /api/lineage/keys/ (PEM files).
        from audit.keys import public_pem
        from lineage.models import PipelineKey

        for key in PipelineKey.objects.order_by("pk"):
            (folder / f"pipeline-{key.pk}.pem").write_text(public_pem(bytes(key.public_key)))
            args = (*args, "--trusted-key", f"pipeline-{key.pk}.pem")
    (folder / "verify.py").write_bytes(VERIFY_PY.read_bytes())
    (folder / "bundle.zip").write_bytes(bundle)
    return subprocess.run([sys.executable, "-I", "verify.py", "bundle.zip", *args], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def verdict(result: subprocess.CompletedProcess[str]) -> str:
    """The output after verify.py's first line (its own SHA-256, checked here too)."""
    first, _, rest = result.stdout.partition("\n")
    assert first == f"verify.py sha256 {hashlib.sha256(VERIFY_PY.read_bytes()).hexdigest()}", result.stdout
    return rest


def members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tamper(bundle: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """An outsider's edit: change the files, leave the signed manifest as it was."""
    files = members(bundle)
    change(files)
    return rezip(files)


def tamper_and_resign(bundle: bytes, change: Callable[[dict[str, bytes]], None],
                      private_key: Ed25519PrivateKey | None = None, keyid: str | None = None) -> bytes:
    """An insider's edit: change the files, then rewrite the manifest and sign it again.

    With the server's own key (the default) the manifest checks pass, so only the deeper
    check under test can catch the edit.
    """
    files = members(bundle)
    change(files)
    manifest = json.loads(files["manifest.json"])
    listed = sorted(name for name in files if name not in ("manifest.json", "manifest.dsse.json"))
    manifest["files"] = [{"path": name, "size": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()}
                         for name in listed]
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n"
    if private_key is None:
        loaded = active_key(SigningKey.Purpose.ATTESTATION)
        private_key, keyid = loaded.private_key, loaded.record.dsse_keyid
    envelope = dsse.sign_envelope(manifest_bytes, payload_type=MANIFEST_PAYLOAD_TYPE, private_key=private_key,
                                  keyid=keyid or dsse.envelope_keyid(private_key.public_key().public_bytes_raw()))
    files["manifest.json"] = manifest_bytes
    files["manifest.dsse.json"] = json.dumps(envelope).encode()
    return rezip(files)


def entry_lines(files: dict[str, bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in files["ledger/entries.jsonl"].splitlines()]


def write_entry_lines(files: dict[str, bytes], lines: list[dict[str, object]]) -> None:
    files["ledger/entries.jsonl"] = b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n"
                                             for line in lines)
