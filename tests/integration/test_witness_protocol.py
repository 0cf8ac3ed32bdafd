"""The stand-alone witness (witness/witness.py), run as its own process, answers as C2SP tlog-witness says."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from audit import cosign
from tests.witness.helpers import MemoryLog, WitnessProcess, witness_create

pytestmark = pytest.mark.integration  # starts the witness as its own process

ORIGIN = "governance.test/ledger"


@pytest.fixture
def log() -> MemoryLog:
    memory = MemoryLog(origin=ORIGIN)
    memory.append(*[f"entry {n}".encode() for n in range(5)])
    return memory


@pytest.fixture
def witness(tmp_path: Path, log: MemoryLog) -> Iterator[WitnessProcess]:
    process = witness_create(tmp_path / "witness")
    added = process.run("add-log", "--origin", ORIGIN, "--vkey", log.vkey)
    assert added.returncode == 0, added.stderr
    process.start()
    yield process
    process.stop()


def post(witness: WitnessProcess, *, old: int, proof: list[bytes], checkpoint: str) -> httpx.Response:
    body = cosign.add_checkpoint_body(old_size=old, proof=proof, signed_checkpoint=checkpoint)
    return httpx.post(witness.url + "/add-checkpoint", content=body, timeout=10)


def test_first_checkpoint_is_cosigned_with_a_valid_cosignature_v1(witness: WitnessProcess, log: MemoryLog) -> None:
    before = int(time.time())
    response = post(witness, old=0, proof=[], checkpoint=log.checkpoint())
    assert response.status_code == 200, response.text
    key = cosign.parse_witness_vkey(witness.vkey)
    text = log.checkpoint()[: log.checkpoint().rfind("\n\n") + 1]
    lines = response.text.splitlines()
    assert len(lines) == 1 and response.text.endswith("\n")
    cosignature = cosign.verify_cosignature_line(lines[0], text, key)
    assert before <= cosignature.timestamp <= int(time.time())
    raw = base64.b64decode(lines[0].split(" ")[2])
    assert raw[:4] == cosign.witness_key_id(key.name, key.public_key)
    assert struct.unpack(">Q", raw[4:12])[0] == cosignature.timestamp
    # The key id is over type 0x04, not the signed-note 0x01: a plain note verifier would not match it.
    assert base64.b64decode(witness.vkey.split("+", 2)[2])[0] == 0x04


def test_consistent_growth_is_cosigned(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    log.append(b"six", b"seven", b"eight")
    response = post(witness, old=5, proof=log.consistency(5), checkpoint=log.checkpoint())
    assert response.status_code == 200, response.text


def test_wrong_old_size_gets_409_with_the_cosigned_size(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    log.append(b"six")
    response = post(witness, old=0, proof=[], checkpoint=log.checkpoint())
    assert response.status_code == 409
    assert response.headers["content-type"] == "text/x.tlog.size"
    assert response.text == "5\n"


def test_bad_consistency_proof_gets_422(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    log.append(b"six", b"seven")
    proof = log.consistency(5)
    proof[0] = bytes(32)
    assert post(witness, old=5, proof=proof, checkpoint=log.checkpoint()).status_code == 422


def test_same_size_fork_gets_422(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    fork = MemoryLog(origin=ORIGIN, key=log.key)
    fork.append(*[f"other {n}".encode() for n in range(5)])
    assert post(witness, old=5, proof=[], checkpoint=fork.checkpoint()).status_code == 422


def test_rollback_to_a_smaller_tree_is_refused(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    # The log pretends the witness saw less (409 names 5), then claims 5 as old for size 3 (400).
    assert post(witness, old=3, proof=[], checkpoint=log.checkpoint(3)).status_code == 409
    assert post(witness, old=5, proof=[], checkpoint=log.checkpoint(3)).status_code == 400


def test_unknown_origin_gets_404_and_wrong_key_403(witness: WitnessProcess, log: MemoryLog) -> None:
    stranger = MemoryLog(origin="elsewhere.test/log")
    stranger.append(b"x")
    assert post(witness, old=0, proof=[], checkpoint=stranger.checkpoint()).status_code == 404
    resigned = MemoryLog(origin=ORIGIN)  # same origin, a new key
    resigned.leaves = list(log.leaves)
    assert post(witness, old=0, proof=[], checkpoint=resigned.checkpoint()).status_code == 403


@pytest.mark.parametrize("body", [b"", b"old 01\n\nx", b"new 0\n\n", b"old 0\nnot base64!\n\nx\n", b"\xff\xfe"])
def test_malformed_requests_get_400(witness: WitnessProcess, body: bytes) -> None:
    assert httpx.post(witness.url + "/add-checkpoint", content=body, timeout=10).status_code == 400


def test_state_survives_a_restart(witness: WitnessProcess, log: MemoryLog) -> None:
    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    witness.stop()
    witness.start()
    response = post(witness, old=0, proof=[], checkpoint=log.checkpoint())
    assert (response.status_code, response.text) == (409, "5\n")


def test_a_second_log_key_needs_rotated_and_then_both_verify(witness: WitnessProcess, log: MemoryLog) -> None:
    rotated = MemoryLog(origin=ORIGIN, leaves=list(log.leaves))  # same tree, a new key
    result = witness.run("add-log", "--origin", ORIGIN, "--vkey", rotated.vkey)
    assert result.returncode == 1 and "another key" in result.stderr
    assert post(witness, old=0, proof=[], checkpoint=rotated.checkpoint()).status_code == 403
    assert witness.run("add-log", "--origin", ORIGIN, "--vkey", rotated.vkey, "--rotated").returncode == 0
    assert post(witness, old=0, proof=[], checkpoint=rotated.checkpoint()).status_code == 200
    rotated.append(b"six")
    assert post(witness, old=5, proof=rotated.consistency(5), checkpoint=rotated.checkpoint()).status_code == 200
    log.append(b"six", b"seven")
    assert post(witness, old=6, proof=log.consistency(6), checkpoint=log.checkpoint()).status_code == 200


def test_refused_signed_requests_are_kept_as_evidence(witness: WitnessProcess, log: MemoryLog) -> None:
    import sqlite3

    assert post(witness, old=0, proof=[], checkpoint=log.checkpoint()).status_code == 200
    fork = MemoryLog(origin=ORIGIN, key=log.key)
    fork.append(*[f"other {n}".encode() for n in range(5)])
    assert post(witness, old=5, proof=[], checkpoint=fork.checkpoint()).status_code == 422
    with sqlite3.connect(witness.state / "witness.sqlite") as db:
        rows = db.execute("SELECT status, request FROM evidence").fetchall()
    assert rows == [(422, "old 5\n\n" + fork.checkpoint())]
