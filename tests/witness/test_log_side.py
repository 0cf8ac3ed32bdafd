"""The log side: tlog-policy parsing, and how the push handles each witness answer (an in-process fake witness)."""

from __future__ import annotations

import base64
import importlib.util

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import cosign, merkle, note, witnesses
from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint, LedgerEntry, WitnessCosignature
from tests.witness.helpers import WITNESS_PY

spec = importlib.util.spec_from_file_location("standalone_witness", WITNESS_PY)
assert spec and spec.loader
standalone = importlib.util.module_from_spec(spec)
spec.loader.exec_module(standalone)

WITNESS_NAME = "witness.test/fake"
WITNESS_KEY = Ed25519PrivateKey.generate()
WITNESS_VKEY = standalone.make_vkey(WITNESS_NAME, 0x04, WITNESS_KEY.public_key().public_bytes_raw())


def fake_witness() -> cosign.PolicyWitness:
    return cosign.parse_policy(f"witness fake {WITNESS_VKEY} http://witness.test/\nquorum fake\n").witnesses["fake"]


@pytest.fixture
def checkpoint(empty_ledger):  # type: ignore[no-untyped-def]
    for index in range(7):
        ledger_append(actor="system:test", action="test.changed", subject=("test.thing", "1"), payload={"n": index})
    return checkpoint_create()


def text_of(signed: str) -> str:
    return signed[: signed.rfind("\n\n") + 1]


def push(checkpoint, handler) -> witnesses.Outcome:  # type: ignore[no-untyped-def]
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return witnesses.checkpoint_witness(checkpoint=checkpoint, witness=fake_witness(), client=client)


def refusals() -> list[dict[str, object]]:
    return [e.payload for e in LedgerEntry.objects.filter(action="ledger.witness_refused")]


# --- tlog-policy ----------------------------------------------------------------------------

def test_policy_with_nested_groups_and_thresholds() -> None:
    keys = [standalone.make_vkey(f"w{n}.test", 0x04, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
            for n in range(4)]
    log_vkey = note.vkey("log.test", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    policy = cosign.parse_policy(
        f"# comment\nlog {log_vkey}\n\twitness X1 {keys[0]}\nwitness X2 {keys[1]} https://x2.test/\n"
        f"witness Y1 {keys[2]}\nwitness Y2 {keys[3]}\ngroup X 2 X1 X2\ngroup Y any Y1 Y2\n"
        "group XY all X Y\nquorum XY\n")
    assert [v.name for v in policy.logs] == ["log.test"]
    assert policy.witnesses["X2"].url == "https://x2.test/"
    assert policy.satisfied({"X1", "X2", "Y2"})
    assert not policy.satisfied({"X1", "Y1", "Y2"})
    assert not policy.satisfied({"X1", "X2"})
    assert cosign.parse_policy("quorum none\n").satisfied(set())


@pytest.mark.parametrize("text, words", [
    ("", "no quorum line"),
    ("quorum w\n", "not defined above"),
    ("witness w {k}\nquorum w\nquorum w\n", "more than one quorum"),
    ("witness w {k}\nwitness v {k}\nquorum w\n", "duplicate witness key"),
    ("witness w {k}\ngroup g 2 w\nquorum g\n", "threshold"),
    ("witness w {k}\ngroup g any w w\nquorum g\n", "twice"),
    ("group g any w\nquorum g\n", "not defined above"),
    ("witness none {k}\nquorum none\n", "reserved"),
    ("witness w {log}\nquorum w\n", "type 0x04"),
])
def test_malformed_policies_are_refused(text: str, words: str) -> None:
    key = standalone.make_vkey("w.test", 0x04, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    log_vkey = note.vkey("log.test", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    with pytest.raises(cosign.CosignatureError, match=words):
        cosign.parse_policy(text.format(k=key, log=log_vkey))


# --- Answers --------------------------------------------------------------------------------

def test_409_with_a_size_is_retried_with_a_proof_from_that_size(checkpoint) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        seen.append(body.split("\n", 1)[0])
        if body.startswith("old 0\n"):
            return httpx.Response(409, content=b"3\n", headers={"Content-Type": "text/x.tlog.size"})
        head, _, signed = body.partition("\n\n")
        proof = [base64.b64decode(line) for line in head.split("\n")[1:]]
        merkle.verify_consistency(3, 7, proof, merkle.root_hash([e.leaf_hash for e in LedgerEntry.objects.all()[:3]]),
                                  checkpoint.root_hash)
        line = standalone.cosign(text_of(signed), name=WITNESS_NAME, private_key=WITNESS_KEY, timestamp=1_900_000_000)
        return httpx.Response(200, content=line.encode())

    outcome = push(checkpoint, handler)
    assert (outcome.result, seen) == ("cosigned", ["old 0", "old 3"])
    stored = WitnessCosignature.objects.get()
    assert stored.checkpoint == checkpoint and int(stored.cosigned_at.timestamp()) == 1_900_000_000
    assert witnesses.cosigned_note(checkpoint) == checkpoint.note + stored.line + "\n"


@pytest.mark.parametrize("status, content_type", [(409, "text/plain"), (422, "text/plain")])
def test_409_without_a_size_and_422_are_a_fork_alarm(checkpoint, status, content_type) -> None:  # type: ignore[no-untyped-def]
    outcome = push(checkpoint, lambda request: httpx.Response(status, content=b"",
                                                              headers={"Content-Type": content_type}))
    assert outcome.result == "refused"
    [payload] = refusals()
    assert (payload["status"], payload["fork"], payload["tree_size"]) == (status, True, 7)
    assert not WitnessCosignature.objects.exists()


def test_429_backs_off_without_a_refusal(checkpoint) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(witnesses.WitnessUnavailable) as raised:
        push(checkpoint, lambda request: httpx.Response(429, headers={"Retry-After": "17"}))
    assert raised.value.retry_after_s == 17
    assert refusals() == []


def test_a_200_without_a_valid_cosignature_is_a_refusal(checkpoint) -> None:  # type: ignore[no-untyped-def]
    other = Ed25519PrivateKey.generate()

    def handler(request: httpx.Request) -> httpx.Response:
        signed = request.content.decode().partition("\n\n")[2]
        return httpx.Response(200, content=standalone.cosign(text_of(signed), name=WITNESS_NAME, private_key=other,
                                                             timestamp=1).encode())

    assert push(checkpoint, handler).result == "refused"
    assert refusals()[0]["fork"] is False
    assert not WitnessCosignature.objects.exists()


def test_cosignatures_are_append_only(checkpoint) -> None:  # type: ignore[no-untyped-def]
    from django.db import DatabaseError, transaction

    def handler(request: httpx.Request) -> httpx.Response:
        signed = request.content.decode().partition("\n\n")[2]
        return httpx.Response(200, content=standalone.cosign(text_of(signed), name=WITNESS_NAME,
                                                             private_key=WITNESS_KEY, timestamp=5).encode())

    push(checkpoint, handler)
    for change in (lambda: WitnessCosignature.objects.update(witness_name="x"),
                   lambda: WitnessCosignature.objects.all().delete()):
        with pytest.raises(DatabaseError), transaction.atomic():
            change()
    assert WitnessCosignature.objects.get().witness_name == WITNESS_NAME


def test_witnesses_receive_only_the_checkpoint(checkpoint) -> None:  # type: ignore[no-untyped-def]
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(503)

    with pytest.raises(witnesses.WitnessUnavailable):
        push(checkpoint, handler)
    assert bodies == [b"old 0\n\n" + checkpoint.note.encode()]
    # The checkpoint is origin, size and root, and the log's signature: no entry, no extension line.
    body, _, signatures = checkpoint.note.partition("\n\n")
    assert body.split("\n")[1:] == ["7", base64.b64encode(bytes(checkpoint.root_hash)).decode()]
    assert signatures.count("\n") == 1


# --- When pushes happen ---------------------------------------------------------------------

def test_a_new_checkpoint_queues_the_push_only_when_a_policy_is_set(empty_ledger, settings, monkeypatch,
                                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    from audit import ledger

    queued: list[str] = []
    monkeypatch.setattr(ledger, "task_enqueue_on_commit", lambda name, *a, **k: queued.append(name))
    ledger_append(actor="system:test", action="test.changed", subject=("test.thing", "1"), payload={})
    settings.WITNESS_POLICY_FILE = ""
    checkpoint_create()
    assert queued == []
    ledger_append(actor="system:test", action="test.changed", subject=("test.thing", "1"), payload={})
    policy = tmp_path / "policy"
    policy.write_text(f"witness fake {WITNESS_VKEY} http://127.0.0.1:9/\nquorum fake\n")
    settings.WITNESS_POLICY_FILE = str(policy)
    checkpoint_create()
    checkpoint_create()  # unchanged head: the same checkpoint, nothing new to push
    assert queued == ["audit.tasks.checkpoint_witness_task"]


def test_the_task_backs_off_as_the_witness_asks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from celery.exceptions import Retry

    from audit import tasks

    def busy(**kwargs: object) -> list[witnesses.Outcome]:
        raise witnesses.WitnessUnavailable("fake: HTTP 429", retry_after_s=17)

    monkeypatch.setattr(witnesses, "checkpoint_witness_latest", busy)
    with pytest.raises(Retry) as raised:
        tasks.checkpoint_witness_task.apply(throw=True)
    assert raised.value.when == 17


# --- Pages ----------------------------------------------------------------------------------

def test_the_keys_page_lists_the_policy_witnesses_and_labels_the_demo(db, client, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import html

    demo_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    demo_vkey = standalone.make_vkey("demo-witness.localhost/not-independent", 0x04, demo_key)
    assert "No witness is configured: the history is vouched for by the operator only." in \
        client.get("/keys/").content.decode()
    policy = tmp_path / "policy"
    policy.write_text(f"witness demo {demo_vkey} http://127.0.0.1:7380\nwitness fake {WITNESS_VKEY}\n"
                      "group both all demo fake\nquorum both\n")
    settings.WITNESS_POLICY_FILE = str(policy)
    text = html.unescape(client.get("/keys/").content.decode())
    assert f"demo <strong>(demo witness: not independent)</strong></td><td class=\"mono hash\">{demo_vkey}<" in text
    assert f"<td>fake</td><td class=\"mono hash\">{WITNESS_VKEY}<" in text


def test_ledger_checkpoint_with_witness_pushes_at_once_and_prints_each_answer(empty_ledger, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from io import StringIO

    from django.core.management import call_command

    from audit.management.commands import ledger_checkpoint as command

    ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m"), payload={})
    pushed: list[int] = []

    def push(**_: object) -> list[witnesses.Outcome]:
        size = Checkpoint.objects.order_by("-tree_size").first().tree_size  # type: ignore[union-attr]
        pushed.append(size)
        return [witnesses.Outcome(witness="demo", result="cosigned", tree_size=size)]

    monkeypatch.setattr(command, "checkpoint_witness_latest", push)
    out, err = StringIO(), StringIO()
    call_command("ledger_checkpoint", stdout=out, stderr=err)
    assert pushed == []  # without --witness the worker's task pushes later
    call_command("ledger_checkpoint", "--witness", stdout=out, stderr=err)
    assert pushed == [1] and "witness demo: cosigned @1" in err.getvalue()
