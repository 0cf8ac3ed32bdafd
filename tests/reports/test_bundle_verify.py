"""Build a bundle and check it with the stand-alone verify.py: every tamper case is rejected by its own test."""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle, note
from audit.keys import active_key
from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint, LedgerEntry, SigningKey
from audit.services import signing_key_rotate
from tests.conftest import DATA_DIR
from tests.reports.bundle_helpers import (
    SUBJECTS,
    VERIFY_PY,
    entry_lines,
    load_verifier,
    make_bundle,
    members,
    rezip,
    run_verify,
    sign_attestation,
    tamper,
    tamper_and_resign,
    verdict,
    write_entry_lines,
)

pytestmark = pytest.mark.django_db

VECTOR_DIR = DATA_DIR / "merkle"


@pytest.fixture
def bundle() -> bytes:
    from tests.reports.bundle_helpers import seed_ledger

    seed_ledger()
    envelope = sign_attestation({"_type": "statement", "n": 1})
    ledger_append(actor="system:test", action="test.attested", subject=SUBJECTS[1],
                  payload={"attestation": {"envelope_sha256": hashlib.sha256(envelope).hexdigest()}})
    checkpoint_create()
    # Later entries about other subjects: the latest checkpoint is past the bundle's, so the
    # consistency proof between them is not the trivial one.
    ledger_append(actor="system:test", action="test.unrelated", subject=("test.other", "later"), payload={})
    checkpoint_create()
    return make_bundle(attestations={"run-1.dsse.json": envelope},
                       audits={"audit-1.json": b'{"passed": true}\n'},
                       report={"report.json": b'{"sections": []}\n'})


def assert_rejected(result, check: str, words: str = "") -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, result.stdout + result.stderr
    assert verdict(result).startswith(f"FAIL [{check}]"), result.stdout
    assert words in result.stdout, result.stdout


# --- The good case -------------------------------------------------------------------------

def test_bundle_verifies_and_summarizes(tmp_path, bundle):
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = LedgerEntry.objects.filter(subject_type__startswith="test.", subject_id__in=["credit", "credit-v1"])
    assert f"entries:     {expected.count()} " in verdict(result)
    assert verdict(result).endswith("OK: every check holds, against the pinned keys.\n")
    assert "keys pinned with --trusted-key" in result.stdout


def test_with_nothing_pinned_every_check_runs_but_the_exit_code_says_self_consistent_only(tmp_path, bundle):
    result = run_verify(tmp_path, bundle, pin=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "keys taken from the bundle itself: consistent with itself only" in verdict(result)
    assert verdict(result).endswith(
        "NOT VERIFIED: every check holds, but the bundle is only consistent with itself: no key was pinned "
        "with --trusted-key, so its keys came from the bundle. Exit code 3.\n")
    assert "ok  1 RFC 9162" not in result.stdout and "inclusion proof(s) lead to the checkpoint root" in result.stdout


def test_bundle_holds_every_entry_about_the_subjects_and_nothing_else(bundle):
    files = members(bundle)
    lines = entry_lines(files)
    wanted = list(LedgerEntry.objects.filter(subject_type__in=["test.model", "test.version"]).order_by("seq"))
    assert [line["seq"] for line in lines] == [entry.seq for entry in wanted]
    for line, entry in zip(lines, wanted, strict=True):
        assert base64.b64decode(line["canonical"]) == bytes(entry.canonical)
        assert line["entry_hash"] == bytes(entry.entry_hash).hex()
    manifest = json.loads(files["manifest.json"])
    assert {(s["type"], s["id"]) for s in manifest["subjects"]} == set(SUBJECTS)
    assert set(files) == {f["path"] for f in manifest["files"]} | {"manifest.json", "manifest.dsse.json"}


def test_proofs_match_the_ledgers_own_proofs_and_the_earliest_covering_checkpoint(bundle):
    from audit.ledger import inclusion_proof

    files = members(bundle)
    proofs = json.loads(files["ledger/proofs.json"])
    last_seq = entry_lines(files)[-1]["seq"]
    covering = Checkpoint.objects.filter(tree_size__gt=last_seq).order_by("tree_size").first()
    assert proofs["tree_size"] == covering.tree_size
    assert files["ledger/checkpoint.txt"].decode() == covering.note
    for proof in proofs["proofs"]:
        expected = inclusion_proof(leaf_index=proof["seq"], tree_size=covering.tree_size)
        assert [base64.b64decode(h) for h in proof["hashes"]] == expected
    consistency = json.loads(files["ledger/consistency.json"])
    latest = Checkpoint.objects.latest()
    assert consistency["latest_checkpoint"] == latest.note
    assert (consistency["first"], consistency["second"]) == (covering.tree_size, latest.tree_size)
    assert covering.tree_size < latest.tree_size  # the consistency proof is not the trivial one


def test_bundle_verifies_with_pinned_server_keys(tmp_path, bundle):
    pinned = [key.vkey for key in SigningKey.objects.all()]
    args = [arg for vkey in pinned for arg in ("--trusted-key", vkey)]
    result = run_verify(tmp_path, bundle, *args)
    assert result.returncode == 0, result.stdout
    assert "keys pinned with --trusted-key" in result.stdout


def test_empty_subject_bundle_verifies(tmp_path):
    ledger_append(actor="system:test", action="test.x", subject=("test.other", "1"))
    checkpoint_create()
    result = run_verify(tmp_path, make_bundle([("test.nothing", "here")]))
    assert result.returncode == 0, result.stdout
    assert "entries:     0" in result.stdout


def test_bundle_spanning_a_checkpoint_key_rotation_verifies(tmp_path, settings):
    for name in ("ledger.key", "attestation.key"):
        source = Path(getattr(settings, "LEDGER_SIGNING_KEY_FILE" if name == "ledger.key"
                              else "ATTESTATION_SIGNING_KEY_FILE"))
        (tmp_path / name).write_bytes(source.read_bytes())
    settings.LEDGER_SIGNING_KEY_FILE = tmp_path / "ledger.key"
    settings.ATTESTATION_SIGNING_KEY_FILE = tmp_path / "attestation.key"
    ledger_append(actor="system:test", action="test.x", subject=SUBJECTS[0])
    old = checkpoint_create()
    signing_key_rotate(purpose=SigningKey.Purpose.CHECKPOINT)
    ledger_append(actor="system:test", action="test.y", subject=("test.other", "1"))
    new = checkpoint_create()
    assert old.key_id != new.key_id
    bundle = make_bundle([SUBJECTS[0]])
    names = set(members(bundle))
    assert {f"keys/checkpoint-{old.key.key_id}.vkey", f"keys/checkpoint-{new.key.key_id}.vkey"} <= names
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout


# --- Outsider edits: caught by the signed manifest -------------------------------------------

def test_a_change_to_any_byte_of_any_file_is_rejected(tmp_path, bundle):
    verifier = load_verifier()
    files = members(bundle)
    for name, data in files.items():
        for position in sorted({0, len(data) // 2, len(data) - 1}):
            changed = dict(files)
            flipped = bytearray(data)
            flipped[position] ^= 0x01
            changed[name] = bytes(flipped)
            path = tmp_path / "flipped.zip"
            path.write_bytes(rezip(changed))
            with pytest.raises(verifier.VerificationError):
                verifier.verify_bundle(str(path))
    # And one of them end to end, as a process.
    assert_rejected(run_verify(tmp_path, tamper(bundle, lambda f: f.update(
        {"audits/audit-1.json": b'{"passed": false}\n'}))), "digest", "audits/audit-1.json")


def test_a_file_added_is_rejected(tmp_path, bundle):
    assert_rejected(run_verify(tmp_path, tamper(bundle, lambda f: f.update({"audits/extra.json": b"{}"}))),
                    "manifest", "file not in the manifest: audits/extra.json")


def test_a_file_removed_is_rejected(tmp_path, bundle):
    assert_rejected(run_verify(tmp_path, tamper(bundle, lambda f: f.pop("report/report.json"))),
                    "manifest", "missing: report/report.json")


def test_the_manifest_removed_is_rejected(tmp_path, bundle):
    assert_rejected(run_verify(tmp_path, tamper(bundle, lambda f: f.pop("manifest.dsse.json"))),
                    "manifest", "manifest.dsse.json is missing")


# --- Insider edits (manifest re-signed with the server key): caught by the deeper checks ---

def test_an_edited_entry_is_rejected_by_its_entry_hash(tmp_path, bundle):
    def edit(files):
        lines = entry_lines(files)
        canonical = base64.b64decode(lines[1]["canonical"]).replace(b"test.changed", b"test.chan9ed")
        lines[1]["canonical"] = base64.b64encode(canonical).decode()
        write_entry_lines(files, lines)

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, edit)), "entries",
                    "entry_hash is not SHA-256 of its canonical bytes")


def test_an_edited_entry_with_a_recomputed_hash_is_rejected_by_its_inclusion_proof(tmp_path, bundle):
    def edit(files):
        lines = entry_lines(files)
        document = json.loads(base64.b64decode(lines[0]["canonical"]))
        document["payload"] = {"index": 999}
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        lines[0]["canonical"] = base64.b64encode(canonical).decode()
        lines[0]["entry_hash"] = hashlib.sha256(canonical).hexdigest()
        write_entry_lines(files, lines)

    result = run_verify(tmp_path, tamper_and_resign(bundle, edit))
    # The next entry's prev_hash no longer links, or (if not consecutive) the proof fails.
    assert result.returncode == 1
    assert verdict(result).startswith(("FAIL [inclusion]", "FAIL [entries]")), result.stdout


def test_an_edited_last_entry_is_rejected_by_its_inclusion_proof(tmp_path, bundle):
    def edit(files):
        lines = entry_lines(files)
        document = json.loads(base64.b64decode(lines[-1]["canonical"]))
        document["actor"] = "user:mallory"
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        lines[-1]["canonical"] = base64.b64encode(canonical).decode()
        lines[-1]["entry_hash"] = hashlib.sha256(canonical).hexdigest()
        write_entry_lines(files, lines)

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, edit)), "inclusion",
                    "does not lead to the checkpoint's root")


def test_a_dropped_entry_is_rejected(tmp_path, bundle):
    def drop(files):
        lines = entry_lines(files)
        del lines[2]
        write_entry_lines(files, lines)

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, drop)), "entries", "but the manifest says")


def test_a_dropped_entry_with_its_count_fixed_is_rejected_by_the_proof_list(tmp_path, bundle):
    def drop(files):
        lines = entry_lines(files)
        del lines[2]
        write_entry_lines(files, lines)
        manifest = json.loads(files["manifest.json"])
        manifest["entry_count"] -= 1
        files["manifest.json"] = json.dumps(manifest).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, drop)), "proofs", "proofs for")


def test_reordered_entries_are_rejected(tmp_path, bundle):
    def swap(files):
        lines = entry_lines(files)
        lines[0], lines[1] = lines[1], lines[0]
        write_entry_lines(files, lines)

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, swap)), "entries", "not in ledger order")


def test_an_entry_whose_seq_disagrees_with_its_canonical_bytes_is_rejected(tmp_path, bundle):
    def relabel(files):
        lines = entry_lines(files)
        lines[0]["seq"] = lines[0]["seq"] + 1000
        write_entry_lines(files, lines)

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, relabel)), "entries", "the canonical document says")


def test_an_altered_inclusion_proof_is_rejected(tmp_path, bundle):
    def alter(files):
        proofs = json.loads(files["ledger/proofs.json"])
        node = bytearray(base64.b64decode(proofs["proofs"][0]["hashes"][0]))
        node[0] ^= 0x80
        proofs["proofs"][0]["hashes"][0] = base64.b64encode(bytes(node)).decode()
        files["ledger/proofs.json"] = json.dumps(proofs).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, alter)), "inclusion")


def test_a_truncated_inclusion_proof_is_rejected(tmp_path, bundle):
    def truncate(files):
        proofs = json.loads(files["ledger/proofs.json"])
        proofs["proofs"][0]["hashes"].pop()
        files["ledger/proofs.json"] = json.dumps(proofs).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, truncate)), "inclusion", "shorter than the path")


def test_an_altered_checkpoint_is_rejected(tmp_path, bundle):
    def alter(files):
        text = files["ledger/checkpoint.txt"].decode()
        origin, size, rest = text.split("\n", 2)
        files["ledger/checkpoint.txt"] = f"{origin}\n{int(size) + 1}\n{rest}".encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, alter)), "checkpoint", "does not verify")


def test_an_altered_latest_checkpoint_is_rejected(tmp_path, bundle):
    def alter(files):
        consistency = json.loads(files["ledger/consistency.json"])
        origin, size, root, rest = consistency["latest_checkpoint"].split("\n", 3)
        root_bytes = bytearray(base64.b64decode(root))
        root_bytes[5] ^= 1
        consistency["latest_checkpoint"] = "\n".join([origin, size, base64.b64encode(bytes(root_bytes)).decode(), rest])
        files["ledger/consistency.json"] = json.dumps(consistency).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, alter)), "checkpoint", "does not verify")


def test_an_altered_consistency_proof_is_rejected(tmp_path, bundle):
    def alter(files):
        consistency = json.loads(files["ledger/consistency.json"])
        node = bytearray(base64.b64decode(consistency["hashes"][-1]))
        node[-1] ^= 1
        consistency["hashes"][-1] = base64.b64encode(bytes(node)).decode()
        files["ledger/consistency.json"] = json.dumps(consistency).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, alter)), "consistency", "is not consistent")


def test_a_checkpoint_inconsistent_with_the_later_one_is_rejected(tmp_path, bundle):
    # A correctly signed later checkpoint of a different (forked) tree: the log was rewritten.
    checkpoint_key = active_key(SigningKey.Purpose.CHECKPOINT)
    consistency_before = json.loads(members(bundle)["ledger/consistency.json"])
    latest = note.parse_checkpoint(note.open_note(consistency_before["latest_checkpoint"],
                                                  [note.parse_vkey(checkpoint_key.record.vkey)])[0])
    forked_root = merkle.node_hash(latest.root_hash, b"\x00" * 32)
    forked = note.sign_note(note.checkpoint_body(latest.origin, latest.tree_size, forked_root),
                            name=checkpoint_key.record.name, private_key=checkpoint_key.private_key)

    def fork(files):
        consistency = json.loads(files["ledger/consistency.json"])
        consistency["latest_checkpoint"] = forked
        files["ledger/consistency.json"] = json.dumps(consistency).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, fork)), "consistency",
                    "does not lead to the second root")


def test_a_latest_checkpoint_smaller_than_the_bundle_checkpoint_is_rejected(tmp_path, bundle):
    older = Checkpoint.objects.order_by("tree_size").first()

    def rollback(files):
        consistency = json.loads(files["ledger/consistency.json"])
        consistency.update({"latest_checkpoint": older.note, "second": older.tree_size, "hashes": []})
        files["ledger/consistency.json"] = json.dumps(consistency).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, rollback)), "consistency")


def test_hostile_json_in_a_re_signed_bundle_fails_cleanly(tmp_path, bundle):
    nested = b"[" * 100_000 + b"]" * 100_000
    for name in ("ledger/proofs.json", "ledger/consistency.json"):
        result = run_verify(tmp_path, tamper_and_resign(bundle, lambda f, name=name: f.update({name: nested})))
        assert result.returncode == 1 and verdict(result).startswith("FAIL ["), result.stdout + result.stderr
        assert "Traceback" not in result.stderr


# --- Unknown keys and trust ------------------------------------------------------------------

def test_a_manifest_signed_by_an_unknown_key_is_rejected(tmp_path, bundle):
    stranger = Ed25519PrivateKey.generate()
    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, lambda f: None, private_key=stranger)),
                    "dsse", "not signed by any key in keys/")


def test_a_manifest_signature_claiming_a_known_keyid_but_made_by_another_key_is_rejected(tmp_path, bundle):
    stranger = Ed25519PrivateKey.generate()
    known = active_key(SigningKey.Purpose.ATTESTATION).record.dsse_keyid
    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, lambda f: None, private_key=stranger, keyid=known)),
                    "dsse", "does not verify")


def test_a_checkpoint_signed_by_an_unknown_key_is_rejected(tmp_path, bundle):
    # Same origin name, same body, but signed by a key the bundle does not carry.
    stranger = Ed25519PrivateKey.generate()

    def resign_checkpoint(files):
        text = files["ledger/checkpoint.txt"].decode()
        body = text[: text.rfind("\n\n") + 1]
        origin = body.split("\n", 1)[0]
        files["ledger/checkpoint.txt"] = note.sign_note(body, name=origin, private_key=stranger).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, resign_checkpoint)), "checkpoint",
                    "no signature by a known key")


def test_an_attestation_signed_by_an_unknown_key_is_rejected(tmp_path, bundle):
    forged = sign_attestation({"_type": "statement", "n": 1}, private_key=Ed25519PrivateKey.generate())
    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, lambda f: f.update(
        {"attestations/run-1.dsse.json": forged}))), "dsse", "attestations/run-1.dsse.json is not signed")


def test_a_validly_signed_attestation_that_the_ledger_never_recorded_is_rejected(tmp_path, bundle):
    unrecorded = sign_attestation({"_type": "statement", "n": 2})  # the server's own key
    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, lambda f: f.update(
        {"attestations/run-2.dsse.json": unrecorded}))), "attestations", "is not recorded")


def test_a_bundle_re_signed_with_an_attackers_own_keys_fails_against_pinned_keys(tmp_path, bundle):
    from audit.keys import public_pem

    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes_raw()
    attacker_vkey = note.vkey("governance.example.org/ledger/attestations", raw)

    def swap_keys(files):
        for name in [n for n in files if n.startswith(("keys/attestation-", "attestations/"))]:
            del files[name]
        files["keys/attestation-evil.vkey"] = attacker_vkey.encode()
        files["keys/attestation-evil.pem"] = public_pem(raw).encode()

    forged = tamper_and_resign(bundle, swap_keys, private_key=attacker)
    # Self-consistent, but nothing pinned: never exit 0 (3: consistent with itself only).
    assert run_verify(tmp_path, forged, pin=False).returncode == 3
    pinned = [arg for key in SigningKey.objects.all() for arg in ("--trusted-key", key.vkey)]
    assert_rejected(run_verify(tmp_path, forged, *pinned), "trust", "manifest.dsse.json is not signed by a trusted key")


def test_a_vkey_and_pem_that_disagree_are_rejected(tmp_path, bundle):
    from audit.keys import public_pem

    def swap(files):
        name = next(n for n in files if n.startswith("keys/checkpoint-") and n.endswith(".pem"))
        files[name] = public_pem(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).encode()

    assert_rejected(run_verify(tmp_path, tamper_and_resign(bundle, swap)), "keys", "are different keys")


# --- Zip safety ------------------------------------------------------------------------------

def _raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # bypass zipfile's own name cleaning, as a hostile tool would
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "keys/../../evil", "C:/evil", "keys\\evil", "a//b",
                                  "dir/"])
def test_unsafe_member_names_are_rejected(tmp_path, bundle, name):
    entries = list(members(bundle).items()) + [(name, b"x")]
    assert_rejected(run_verify(tmp_path, _raw_zip(entries)), "zip")


def test_duplicate_member_names_are_rejected(tmp_path, bundle):
    files = members(bundle)
    entries = list(files.items()) + [("report/report.json", b'{"sections": ["forged"]}')]
    with pytest.warns(UserWarning):
        forged = _raw_zip(entries)
    assert_rejected(run_verify(tmp_path, forged), "zip", "appears twice")


def test_a_zip_bomb_member_is_rejected(tmp_path, bundle):
    entries = list(members(bundle).items()) + [("audits/bomb.json", b"\0" * (64 * 1024 * 1024))]
    assert_rejected(run_verify(tmp_path, _raw_zip(entries)), "zip", "zip bomb")


def test_a_file_that_is_not_a_zip_is_rejected(tmp_path):
    assert_rejected(run_verify(tmp_path, b"not a zip at all"), "zip", "not a zip")


# --- The verifier is stand-alone and agrees with independent implementations ---------------

def test_verify_py_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(VERIFY_PY.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "verify.py must not use relative imports"
            imported.add((node.module or "").split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party == {"cryptography"}


def test_the_bundle_carries_no_verifier_and_its_guide_never_says_to_run_code_from_it(bundle):
    files = members(bundle)
    assert not [name for name in files if name.endswith(".py")]
    guide = files["VERIFY.md"].decode()
    assert guide == (VERIFY_PY.parent / "VERIFY.md").read_text()
    assert "Trust anchoring" in guide and "/verify.py" in guide
    assert "unzip -p" not in guide and "verify.py >" not in guide


def _vectors(kind: str) -> list[Path]:
    files = sorted((VECTOR_DIR / kind).glob("*/*.json"))
    return files or [VECTOR_DIR / kind / "MISSING.json"]


def _decode(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.mark.parametrize("path", _vectors("inclusion"), ids=lambda p: p.parent.name + "/" + p.name)
def test_verify_py_inclusion_agrees_with_transparency_dev_vectors(path):
    verifier = load_verifier()
    vector = json.loads(path.read_text())
    proof = [_decode(h) for h in vector["proof"] or []]
    try:
        ok = verifier.root_from_inclusion(_decode(vector["leafHash"]), vector["leafIdx"], vector["treeSize"],
                                          proof) == _decode(vector["root"])
    except ValueError:
        ok = False
    assert ok is not vector["wantErr"]
    # The shared-work verifier the bundle check uses must give the same verdict.
    try:
        verifier.InclusionVerifier(vector["treeSize"], _decode(vector["root"])).verify(
            _decode(vector["leafHash"]), vector["leafIdx"], proof)
        shared_ok = True
    except ValueError:
        shared_ok = False
    assert shared_ok is not vector["wantErr"]


def test_shared_work_inclusion_verifier_still_checks_every_proof_after_a_cached_one():
    verifier_module = load_verifier()
    leaves = [merkle.leaf_hash(str(index).encode()) for index in range(13)]
    root = merkle.root_hash(leaves)
    paths = [merkle.build_proof(merkle.inclusion_proof_ranges(index, 13),
                                lambda wanted: {(lvl, idx): merkle.root_hash(leaves[idx << lvl:(idx + 1) << lvl])
                                                for lvl, idx in wanted}) for index in range(13)]
    checker = verifier_module.InclusionVerifier(13, root)
    for index in range(13):
        checker.verify(leaves[index], index, paths[index])
    # After everything is cached, a proof with a changed upper sibling must still fail.
    bad = list(paths[4])
    bad[-1] = bytes(32)
    with pytest.raises(ValueError):
        checker.verify(leaves[4], 4, bad)
    with pytest.raises(ValueError):
        checker.verify(leaves[5], 4, paths[4])  # wrong leaf for this position
    with pytest.raises(ValueError):
        checker.verify(leaves[4], 4, paths[4] + [bytes(32)])  # longer than the path


@pytest.mark.parametrize("path", _vectors("consistency"), ids=lambda p: p.parent.name + "/" + p.name)
def test_verify_py_consistency_agrees_with_transparency_dev_vectors(path):
    verifier = load_verifier()
    vector = json.loads(path.read_text())
    try:
        verifier.verify_consistency(vector["size1"], vector["size2"], [_decode(h) for h in vector["proof"] or []],
                                    _decode(vector["root1"]), _decode(vector["root2"]))
        ok = True
    except ValueError:
        ok = False
    assert ok is not vector["wantErr"]


def test_manifest_envelope_verifies_with_securesystemslib(bundle):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    files = members(bundle)
    record = active_key(SigningKey.Purpose.ATTESTATION).record
    pem_name = f"keys/attestation-{record.key_id}.pem"
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    raw = load_pem_public_key(files[pem_name]).public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = SSlibKey(hashlib.sha256(raw).hexdigest(), "ed25519", "ed25519", {"public": raw.hex()})
    envelope = Envelope.from_dict(json.loads(files["manifest.dsse.json"]))
    verified = envelope.verify([key], 1)
    assert set(verified) == {key.keyid}
    assert envelope.payload == files["manifest.json"]
    assert envelope.payload_type == "application/vnd.governance.bundle-manifest+json"


def test_securesystemslib_rejects_a_changed_manifest_payload(bundle):
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    record = active_key(SigningKey.Purpose.ATTESTATION).record
    raw = bytes(record.public_key)
    key = SSlibKey(record.dsse_keyid, "ed25519", "ed25519", {"public": raw.hex()})
    envelope = Envelope.from_dict(json.loads(members(bundle)["manifest.dsse.json"]))
    envelope.payload = envelope.payload.replace(b'"format"', b'"f0rmat"')
    with pytest.raises(VerificationError):
        envelope.verify([key], 1)


def test_verify_py_parses_as_python_3_9():
    ast.parse(VERIFY_PY.read_text(), feature_version=(3, 9))


def test_attestation_envelopes_verify_with_securesystemslib(bundle):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    files = members(bundle)
    keys = []
    for name, data in files.items():
        if name.startswith("keys/") and name.endswith(".pem"):
            raw = load_pem_public_key(data).public_bytes(Encoding.Raw, PublicFormat.Raw)
            keys.append(SSlibKey(hashlib.sha256(raw).hexdigest(), "ed25519", "ed25519", {"public": raw.hex()}))
    envelopes = [data for name, data in files.items() if name.startswith("attestations/")]
    assert envelopes
    for data in envelopes:
        assert Envelope.from_dict(json.loads(data)).verify(keys, 1)


def test_trusted_keys_can_be_given_as_files_of_vkeys_or_pem(tmp_path, bundle):
    from audit.keys import public_pem

    vkey_file = tmp_path / "server.vkeys"
    vkey_file.write_text("\n".join(key.vkey for key in SigningKey.objects.all()) + "\n")
    assert run_verify(tmp_path, bundle, "--trusted-key", str(vkey_file)).returncode == 0
    # A PEM of the attestation key alone does not vouch for the checkpoints.
    pem_file = tmp_path / "attestation.pem"
    pem_file.write_text(public_pem(bytes(active_key(SigningKey.Purpose.ATTESTATION).record.public_key)))
    assert_rejected(run_verify(tmp_path, bundle, "--trusted-key", str(pem_file)), "trust",
                    "ledger/checkpoint.txt is not signed by a trusted key")


def test_verify_py_passes_mypy_strict_for_python_3_9(tmp_path):
    import subprocess

    copy = tmp_path / "verify_standalone.py"
    copy.write_bytes(VERIFY_PY.read_bytes())
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--python-version", "3.9",
                             "--no-incremental", str(copy)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_recipes_in_verify_md_run_as_written_on_an_extracted_bundle(tmp_path, bundle):
    import re
    import subprocess

    folder = tmp_path / "b"
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        archive.extractall(folder)  # noqa: S202 (our own bundle, names checked by verify.py)
    guide = (folder / "VERIFY.md").read_text()
    blocks = re.findall(r"```(sh|python)\n(.*?)```", guide, flags=re.S)
    runnable = [(kind, code) for kind, code in blocks if "..." not in code]  # placeholders: the quick start
    assert [kind for kind, _ in runnable] == ["sh", "python", "sh"], runnable
    for kind, code in runnable:
        command = ["bash", "-euo", "pipefail", "-c", code] if kind == "sh" else [sys.executable, "-c", code]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{kind} recipe failed:\n{code}\n{result.stdout}\n{result.stderr}"


def test_an_attestation_signed_before_an_attestation_key_rotation_still_verifies(tmp_path, settings):
    for name, setting in (("ledger.key", "LEDGER_SIGNING_KEY_FILE"), ("attestation.key", "ATTESTATION_SIGNING_KEY_FILE")):
        (tmp_path / name).write_bytes(Path(getattr(settings, setting)).read_bytes())
        setattr(settings, setting, tmp_path / name)
    envelope = sign_attestation({"_type": "statement", "n": 3})
    old_key = active_key(SigningKey.Purpose.ATTESTATION).record
    ledger_append(actor="system:test", action="test.attested", subject=SUBJECTS[0],
                  payload={"attestation": {"envelope_sha256": hashlib.sha256(envelope).hexdigest()}})
    signing_key_rotate(purpose=SigningKey.Purpose.ATTESTATION)
    checkpoint_create()
    bundle = make_bundle([SUBJECTS[0]], attestations={"old.dsse.json": envelope})
    names = set(members(bundle))
    new_key = active_key(SigningKey.Purpose.ATTESTATION).record
    assert {f"keys/attestation-{old_key.key_id}.pem", f"keys/attestation-{new_key.key_id}.pem"} <= names
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout


def test_batched_inclusion_proofs_equal_the_ledgers_own_for_every_leaf_and_tree_size():
    from audit.ledger import current_tree_size, inclusion_proof
    from governance.reports.bundle import InclusionProofs

    start = current_tree_size()
    for index in range(37):
        ledger_append(actor="system:test", action="test.x", subject=("test.other", str(index)))
    total = current_tree_size()
    for tree_size in list(range(max(start, 1), total + 1)):
        leaves = list(range(tree_size))
        batch = InclusionProofs(leaves, tree_size)
        for leaf in leaves:
            assert batch.hashes(leaf) == inclusion_proof(leaf_index=leaf, tree_size=tree_size), (leaf, tree_size)
    # A sparse selection against a size that is not a power of two.
    sparse = [0, 5, total - 1]
    batch = InclusionProofs(sparse, total)
    assert [batch.hashes(leaf) for leaf in sparse] == [inclusion_proof(leaf_index=leaf, tree_size=total)
                                                       for leaf in sparse]
