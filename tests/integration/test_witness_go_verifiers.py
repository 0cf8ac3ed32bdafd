"""Independent verifiers: Go programs (tests/go/) built with Debian's golang-go and golang.org/x/mod check the
checkpoints (sumdb/note), inclusion and consistency proofs (sumdb/tlog) and witness cosignatures that the
service produced, here taken from an exported bundle and from the ledger API's own functions."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import ledger
from audit.models import Checkpoint, LedgerEntry
from tests.conftest import REPO_ROOT, uses_postgres
from tests.integration.test_witness_attacks import push, witness, write_entries  # noqa: F401 (the witness fixture)
from tests.reports.bundle_helpers import make_bundle, members

pytestmark = [pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not uses_postgres(), reason="shares the end-to-end witness setup (PostgreSQL)")]

GO = shutil.which("go")
if GO is None and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason="`go` is not installed (apt-get install golang-go "
                                              "golang-golang-x-mod-dev); CI installs it and runs these"))


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert GO is not None, "CI must install golang-go and golang-golang-x-mod-dev (.ci/install-debian-packages)"
    out = tmp_path_factory.mktemp("go") / "verifycheckpoint"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
           "GOCACHE": str(tmp_path_factory.mktemp("gocache")), "HOME": os.environ.get("HOME", "/tmp")}
    subprocess.run([GO, "build", "-o", str(out), "./tests/go/verifycheckpoint"], cwd=REPO_ROOT, env=env,
                   check=True, capture_output=True, text=True, timeout=600)
    yield out


def run_go(verifier: Path, tmp_path: Path, document: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"input-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(document))
    return subprocess.run([str(verifier), str(path)], capture_output=True, text=True, timeout=60)


def b64(raw: bytes) -> str:
    return base64.b64encode(bytes(raw)).decode()


def test_go_verifies_the_services_checkpoint_cosignature_and_proofs(tmp_path, settings, witness, verifier):  # noqa: F811
    write_entries(5)
    first = Checkpoint.objects.latest()
    write_entries(6)
    assert [o.result for o in push()] == ["cosigned"]
    latest = Checkpoint.objects.latest()
    from audit.witnesses import cosigned_note

    document = {
        "log_vkey": latest.key.vkey, "checkpoint": cosigned_note(latest), "witness_vkeys": [witness.vkey],
        "inclusion": [{"index": e.seq, "leaf_b64": b64(e.canonical),
                       "proof": [b64(h) for h in ledger.inclusion_proof(leaf_index=e.seq, tree_size=latest.tree_size)]}
                      for e in LedgerEntry.objects.order_by("seq")],
        "consistency": {"old_size": first.tree_size, "old_root": b64(first.root_hash),
                        "proof": [b64(h) for h in ledger.consistency_proof(first_size=first.tree_size,
                                                                             second_size=latest.tree_size)]},
    }
    result = run_go(verifier, tmp_path, document)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok cosignatures: regulator.test/witness at " in result.stdout
    assert "ok inclusion: 11 proofs (tlog.CheckRecord)" in result.stdout
    assert f"ok consistency: from {first.tree_size} to 11 (tlog.CheckTree)" in result.stdout

    # Each kind of damage is caught by the Go code too.
    lines = document["checkpoint"].split("\n")  # type: ignore[union-attr]
    index = next(i for i, line in enumerate(lines) if line.startswith("\u2014 regulator.test/witness "))
    prefix, encoded = lines[index].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[40] ^= 1
    lines[index] = f"{prefix} {b64(bytes(raw))}"
    bad_cosignature = {**document, "checkpoint": "\n".join(lines)}
    bad_inclusion = json.loads(json.dumps(document))
    bad_inclusion["inclusion"][3]["proof"][0] = b64(bytes(32))
    bad_consistency = json.loads(json.dumps(document))
    bad_consistency["consistency"]["old_root"] = b64(bytes(32))
    for damaged, words in ((bad_cosignature, "note.Open"), (bad_inclusion, "inclusion of leaf 3"),
                           (bad_consistency, "consistency from")):
        failed = run_go(verifier, tmp_path, damaged)
        assert failed.returncode == 1 and words in failed.stdout, failed.stdout


def test_go_verifies_an_exported_bundle(tmp_path, settings, witness, verifier):  # noqa: F811
    write_entries(7)
    push()
    # Later entries about other subjects: the bundle's checkpoint (7) is older than the witnessed one (9).
    ledger.ledger_append(actor="system:test", action="test.other", subject=("test.other", "1"), payload={})
    ledger.ledger_append(actor="system:test", action="test.other", subject=("test.other", "2"), payload={})
    ledger.checkpoint_create()
    push()
    files = members(make_bundle())
    checkpoint_note = files["ledger/checkpoint.txt"].decode()
    entries = [json.loads(line) for line in files["ledger/entries.jsonl"].decode().splitlines()]
    proofs = json.loads(files["ledger/proofs.json"])["proofs"]
    vkey = next(data.decode().strip() for name, data in files.items()
                if name.startswith("keys/") and name.endswith(".vkey") and "attestation" not in data.decode())
    result = run_go(verifier, tmp_path, {
        "log_vkey": vkey, "checkpoint": checkpoint_note,
        "inclusion": [{"index": e["seq"], "leaf_b64": e["canonical"], "proof": p["hashes"]}
                      for e, p in zip(entries, proofs, strict=True)]})
    assert result.returncode == 0, result.stdout
    assert f"ok inclusion: {len(entries)} proofs" in result.stdout
    witnessed = json.loads(files["ledger/witnessed.json"])
    assert (witnessed["first"], witnessed["second"]) == (7, 9) and witnessed["hashes"]
    body = checkpoint_note[: checkpoint_note.rfind("\n\n")].split("\n")
    result = run_go(verifier, tmp_path, {
        "log_vkey": vkey, "checkpoint": witnessed["checkpoint"], "witness_vkeys": [witness.vkey],
        "consistency": {"old_size": int(body[1]), "old_root": body[2], "proof": witnessed["hashes"]}})
    assert result.returncode == 0, result.stdout
    assert "ok cosignatures: regulator.test/witness" in result.stdout
