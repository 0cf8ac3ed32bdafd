"""C2SP signed notes and checkpoints, checked against vectors from Go's sumdb/note and sum.golang.org."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    add_signature,
    checkpoint_body,
    key_id,
    open_note,
    parse_checkpoint,
    parse_vkey,
    sign_note,
    vkey,
)

# golang.org/x/mod/sumdb/note note_test.go (TestSign, TestOpen).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_PETER_SIG

# A real signed tree head of the Go checksum database, with the key built into the go command
# (from golang.org/x/mod's and transparency-dev's tests): a deployed checkpoint verifier's input.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n"
    "6476701\n"
    "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    "\n"
    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
)

# The example checkpoint body from c2sp.org/tlog-checkpoint.
SPEC_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def go_public_key() -> bytes:
    """Decode the Go vkey by hand, independently of parse_vkey."""
    material = base64.b64decode(GO_VKEY.split("+", 2)[2])
    assert material[0] == 0x01 and len(material) == 33
    return material[1:]


def go_private_key() -> Ed25519PrivateKey:
    material = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert material[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(material[1:])


def sig_line(name: str, raw: bytes) -> str:
    return f"— {name} {base64.b64encode(raw).decode()}\n"


def go_signature_bytes() -> bytes:
    return base64.b64decode(GO_PETER_SIG.split(" ")[2])


@pytest.fixture
def peter() -> Verifier:
    return parse_vkey(GO_VKEY)


@pytest.fixture
def enoch() -> Verifier:
    return parse_vkey(GO_ENOCH_VKEY)


# --- keys -------------------------------------------------------------------------------------


def test_key_id_and_vkey_match_go_for_its_test_key() -> None:
    public_key = go_public_key()
    assert key_id("PeterNeumann", public_key) == bytes.fromhex("c74f20a3")
    assert vkey("PeterNeumann", public_key) == GO_VKEY


def test_parse_vkey_reads_go_vkeys(peter: Verifier, enoch: Verifier) -> None:
    assert peter == Verifier(name="PeterNeumann", key_id=bytes.fromhex("c74f20a3"), public_key=go_public_key())
    assert peter.vkey == GO_VKEY
    assert enoch.key_id == bytes.fromhex("af0cfe78")
    assert parse_vkey(SUMDB_VKEY).key_id == bytes.fromhex("033de0ae")


def test_go_private_key_matches_go_vkey() -> None:
    public_key = go_private_key().public_key().public_bytes_raw()
    assert vkey("PeterNeumann", public_key) == GO_VKEY


def test_parse_vkey_rejects_every_mangling_of_a_valid_vkey() -> None:
    # Mirrors Go's TestNewVerifier: every proper substring and every one-character bump fails.
    for start in range(len(GO_VKEY) + 1):
        for end in range(start + 1, len(GO_VKEY) + 1):
            if (start, end) != (0, len(GO_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(GO_VKEY[start:end])
    for index in range(len(GO_VKEY)):
        bumped = GO_VKEY[:index] + chr(ord(GO_VKEY[index]) + 1) + GO_VKEY[index + 1 :]
        with pytest.raises(NoteError):
            parse_vkey(bumped)


@pytest.mark.parametrize(
    "bad_vkey",
    [
        # Go's vectors: wrong key length and unknown algorithm, each with a matching key id.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_parse_vkey_rejects_bad_keys(bad_vkey: str) -> None:
    with pytest.raises(NoteError):
        parse_vkey(bad_vkey)


@pytest.mark.parametrize("bad_name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "a\u2028b", "a\x01b"])
def test_key_names_must_be_non_empty_without_plus_or_spaces(bad_name: str) -> None:
    with pytest.raises(NoteError):
        key_id(bad_name, go_public_key())
    with pytest.raises(NoteError):
        sign_note(GO_TEXT, name=bad_name, private_key=go_private_key())


def test_key_id_requires_32_byte_key() -> None:
    with pytest.raises(NoteError):
        key_id("PeterNeumann", go_public_key()[:31])


def test_verifier_refuses_key_id_that_does_not_match() -> None:
    with pytest.raises(NoteError):
        Verifier(name="PeterNeumann", key_id=bytes.fromhex("c74f20a4"), public_key=go_public_key())


# --- interop with Go ---------------------------------------------------------------------------


def test_go_signed_note_opens(peter: Verifier) -> None:
    assert open_note(GO_NOTE, [peter]) == (GO_TEXT, [peter])


def test_sign_note_reproduces_go_output_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the same key and text must give Go's exact note.
    assert sign_note(GO_TEXT, name="PeterNeumann", private_key=go_private_key()) == GO_NOTE


def test_go_note_with_two_signers_counts_only_known_keys(peter: Verifier, enoch: Verifier) -> None:
    both = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert open_note(both, [peter]) == (GO_TEXT, [peter])
    assert open_note(both, [enoch]) == (GO_TEXT, [enoch])
    assert open_note(both, [enoch, peter]) == (GO_TEXT, [peter, enoch])


def test_real_sum_golang_org_checkpoint_opens_and_parses() -> None:
    text, signers = open_note(SUMDB_NOTE, [parse_vkey(SUMDB_VKEY)])
    assert [signer.name for signer in signers] == ["sum.golang.org"]
    checkpoint = parse_checkpoint(text)
    assert checkpoint.origin == "go.sum database tree"
    assert checkpoint.tree_size == 6476701
    assert checkpoint.root_hash == base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
    assert checkpoint.body() == text


# --- round trips -------------------------------------------------------------------------------


def test_sign_and_open_round_trip_with_fresh_key() -> None:
    private_key = Ed25519PrivateKey.generate()
    verifier = Verifier.from_public_key("audit.example/log", private_key.public_key().public_bytes_raw())
    text = "hello\n"
    note = sign_note(text, name="audit.example/log", private_key=private_key)
    assert note.startswith("hello\n\n\u2014 audit.example/log ")
    assert open_note(note, [verifier]) == (text, [verifier])
    assert parse_vkey(verifier.vkey) == verifier


def test_text_with_internal_blank_lines_round_trips(peter: Verifier) -> None:
    text = "first\n\nthird\n\n\nsixth\n"
    note = sign_note(text, name="PeterNeumann", private_key=go_private_key())
    assert open_note(note, [peter]) == (text, [peter])


def test_add_signature_co_signs_and_replaces_own_earlier_signature(peter: Verifier) -> None:
    witness_key = Ed25519PrivateKey.generate()
    witness = Verifier.from_public_key("witness.example", witness_key.public_key().public_bytes_raw())
    cosigned = add_signature(GO_NOTE, name="witness.example", private_key=witness_key)
    assert cosigned.startswith(GO_NOTE)
    assert open_note(cosigned, [witness]) == (GO_TEXT, [witness])
    assert open_note(cosigned, [peter, witness]) == (GO_TEXT, [peter, witness])
    again = add_signature(cosigned, name="witness.example", private_key=witness_key)
    assert again.count("\u2014 witness.example ") == 1


def test_add_signature_keeps_unknown_signatures() -> None:
    cosigned = add_signature(GO_NOTE, name="other", private_key=Ed25519PrivateKey.generate())
    assert GO_PETER_SIG in cosigned


def test_duplicate_verifiers_are_harmless(peter: Verifier) -> None:
    assert open_note(GO_NOTE + GO_PETER_SIG, [peter, peter]) == (GO_TEXT, [peter])


# --- rejection -----------------------------------------------------------------------------------


def test_tampered_text_is_rejected(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [peter])


def test_tampered_signature_is_rejected(peter: Verifier) -> None:
    raw = bytearray(go_signature_bytes())
    raw[10] ^= 0x01
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_TEXT + "\n" + sig_line("PeterNeumann", bytes(raw)), [peter])


def test_truncated_signature_by_known_key_is_rejected(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_TEXT + "\n" + sig_line("PeterNeumann", go_signature_bytes()[:-4]), [peter])


def test_bad_signature_by_known_key_rejects_note_even_beside_good_one(peter: Verifier) -> None:
    raw = bytearray(go_signature_bytes())
    raw[-1] ^= 0x80
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_NOTE + sig_line("PeterNeumann", bytes(raw)), [peter])


def test_note_signed_only_by_unknown_key_is_rejected(enoch: Verifier) -> None:
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(GO_NOTE, [enoch])


def test_note_with_no_verifiers_is_rejected() -> None:
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(GO_NOTE, [])


def test_right_name_with_wrong_key_id_does_not_count(peter: Verifier) -> None:
    wrong_id = bytes.fromhex("c74f20a4") + go_signature_bytes()[4:]
    forged = GO_TEXT + "\n" + sig_line("PeterNeumann", wrong_id)
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(forged, [peter])
    # Ignored, not fatal, beside a real signature.
    assert open_note(GO_NOTE + sig_line("PeterNeumann", wrong_id), [peter]) == (GO_TEXT, [peter])


def test_right_key_id_with_wrong_name_does_not_count(peter: Verifier) -> None:
    forged = GO_TEXT + "\n" + sig_line("PeterNeuman", go_signature_bytes())
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(forged, [peter])


@pytest.mark.parametrize(
    ("bad_note", "reason"),
    [
        # Go's TestOpen malformed messages ("\xff" has no str form; a lone surrogate stands in).
        (GO_TEXT, "no blank line"),
        (GO_TEXT + "\n", "newline-terminated signature line"),
        (GO_TEXT + "\n" + GO_PETER_SIG[:-1], "newline-terminated signature line"),
        ("\x01" + GO_NOTE, "control character"),
        ("\ud800" + GO_NOTE, "not valid UTF-8"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", "Bad Name")[:-1], "newline-terminated"),
        (GO_NOTE + "Unexpected line.\n", "not a signature line"),
        # Ours.
        (GO_TEXT + GO_PETER_SIG, "no blank line"),
        (GO_NOTE + "\n", "newline-terminated signature line"),
        (GO_NOTE + "trailing", "newline-terminated signature line"),
        (GO_NOTE.replace("\u2014", "--"), "not a signature line"),
        (GO_NOTE.replace("\u2014 ", "\u2014"), "not a signature line"),
        (GO_NOTE.replace("PeterNeumann", "Peter+Neumann"), "key name"),
        (GO_NOTE.replace("PeterNeumann", "Peter\u00a0Neumann"), "key name"),
        (GO_NOTE.replace("PeterNeumann", "Peter Neumann"), "not standard base64"),
        (GO_NOTE.replace("x08go/", "x08go!"), "not standard base64"),
        (GO_NOTE.replace("AM=\n", "AM\n"), "not standard base64"),
        (GO_NOTE.replace("AM=\n", "AM==\n"), "not standard base64"),
        (GO_NOTE.replace("AM=\n", "AN=\n"), "not canonical base64"),
        (GO_NOTE.replace("\n", "\r\n"), "control character"),
        (GO_TEXT + "\n" + sig_line("PeterNeumann", b"\xc7\x4f\x20\xa3"), "too short"),
        (GO_TEXT + "\n\u2014 PeterNeumann\n", "too short"),
        (GO_TEXT + "\n" + GO_PETER_SIG * 101, "more than 100 signatures"),
    ],
)
def test_malformed_notes_are_rejected(peter: Verifier, bad_note: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(bad_note, [peter])


def test_hundred_signatures_are_accepted(peter: Verifier) -> None:
    assert open_note(GO_TEXT + "\n" + GO_PETER_SIG * 100, [peter]) == (GO_TEXT, [peter])


@pytest.mark.parametrize("bad_text", ["", "abc", "a\n\x00b\n", "tab\there\n", "\ud800\n"])
def test_sign_note_rejects_text_the_spec_forbids(bad_text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(bad_text, name="PeterNeumann", private_key=go_private_key())


# --- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_body_matches_spec_example() -> None:
    root_hash = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint_body("example.com/behind-the-sofa", 20852163, root_hash) == SPEC_CHECKPOINT
    assert parse_checkpoint(SPEC_CHECKPOINT) == Checkpoint(
        origin="example.com/behind-the-sofa", tree_size=20852163, root_hash=root_hash
    )


def test_checkpoint_with_extensions_round_trips() -> None:
    checkpoint = Checkpoint(
        origin="audit.example/log", tree_size=0, root_hash=bytes(range(32)), extensions=("ext one", "ext+two")
    )
    body = checkpoint.body()
    assert body == f"audit.example/log\n0\n{base64.b64encode(bytes(range(32))).decode()}\next one\next+two\n"
    assert parse_checkpoint(body) == checkpoint


def test_signed_checkpoint_round_trips_through_note() -> None:
    private_key = Ed25519PrivateKey.generate()
    verifier = Verifier.from_public_key("audit.example/log", private_key.public_key().public_bytes_raw())
    body = checkpoint_body("audit.example/log", 42, bytes(32))
    text, _ = open_note(sign_note(body, name="audit.example/log", private_key=private_key), [verifier])
    assert parse_checkpoint(text) == Checkpoint(origin="audit.example/log", tree_size=42, root_hash=bytes(32))


ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    "bad_body",
    [
        f"origin\n01\n{ROOT_B64}\n",
        f"origin\n+1\n{ROOT_B64}\n",
        f"origin\n-1\n{ROOT_B64}\n",
        f"origin\n 1\n{ROOT_B64}\n",
        f"origin\n1 \n{ROOT_B64}\n",
        f"origin\n\u0661\n{ROOT_B64}\n",
        f"origin\n1_000\n{ROOT_B64}\n",
        f"origin\n\n{ROOT_B64}\n",
        f"origin\n18446744073709551616\n{ROOT_B64}\n",
        f"\n1\n{ROOT_B64}\n",
        f"origin\n1\n{ROOT_B64}",
        f"origin\n1\n{ROOT_B64}\n\n",
        f"origin\n1\n{ROOT_B64}\next\n\n",
        "origin\n1\n",
        "origin\n1\n\n",
        f"origin\n1\n{ROOT_B64[:-1]}\n",
        f"origin\n1\n{ROOT_B64.replace('=', '')}\n",
        f"origin\n1\n{base64.b64encode(bytes(31)).decode()}\n",
        f"origin\n1\n{base64.b64encode(bytes(33)).decode()}\n",
        f"origin\n1\n{base64.urlsafe_b64encode(bytes([0xFF] * 32)).decode()}\n",
        f"origin\n1\n{ROOT_B64[:-2]}J=\n",
        f"ori\x00gin\n1\n{ROOT_B64}\n",
    ],
)
def test_parse_checkpoint_is_strict(bad_body: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(bad_body)


def test_parse_checkpoint_accepts_largest_uint64() -> None:
    assert parse_checkpoint(f"origin\n18446744073709551615\n{ROOT_B64}\n").tree_size == 2**64 - 1


@pytest.mark.parametrize(
    ("origin", "tree_size", "root_hash", "extensions"),
    [
        ("", 1, bytes(32), ()),
        ("a\nb", 1, bytes(32), ()),
        ("origin", -1, bytes(32), ()),
        ("origin", 2**64, bytes(32), ()),
        ("origin", True, bytes(32), ()),
        ("origin", 1, bytes(31), ()),
        ("origin", 1, bytes(32), ("",)),
        ("origin", 1, bytes(32), ("two\nlines",)),
    ],
)
def test_checkpoint_body_refuses_bad_fields(
    origin: str, tree_size: int, root_hash: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(NoteError):
        checkpoint_body(origin, tree_size, root_hash, extensions)
