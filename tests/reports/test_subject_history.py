"""verify.py proves each subject's history in a bundle is complete (subject_prev), and names a gap."""

from __future__ import annotations

import base64
import json

import pytest

from audit.models import LedgerEntry
from tests.reports.bundle_helpers import (
    SUBJECTS,
    entry_lines,
    make_bundle,
    run_verify,
    seed_ledger,
    tamper_and_resign,
    verdict,
    write_entry_lines,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_ledger")]


@pytest.fixture
def bundle() -> bytes:
    seed_ledger()
    return make_bundle()


def _drop(seq: int):  # type: ignore[no-untyped-def]
    """An insider's edit: leave out one entry and its proof, fix the count, sign the manifest again."""

    def change(files: dict[str, bytes]) -> None:
        write_entry_lines(files, [line for line in entry_lines(files) if line["seq"] != seq])
        proofs = json.loads(files["ledger/proofs.json"])
        proofs["proofs"] = [proof for proof in proofs["proofs"] if proof["seq"] != seq]
        files["ledger/proofs.json"] = json.dumps(proofs).encode()
        manifest = json.loads(files["manifest.json"])
        manifest["entry_count"] -= 1
        files["manifest.json"] = json.dumps(manifest).encode()

    return change


def _seqs_about(subject: tuple[str, str]) -> list[int]:
    return list(LedgerEntry.objects.filter(subject_type=subject[0], subject_id=subject[1])
                .order_by("seq").values_list("seq", flat=True))


def test_a_whole_bundle_proves_every_subject_history_complete(tmp_path, bundle):
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout
    assert ("ok  subject histories: each of the 2 subject(s) with entries has every entry between its first and "
            "its latest one in the bundle (subject_prev links, from seq 0)") in verdict(result)
    # What the check relies on is in the hashed bytes of each entry.
    for line in entry_lines({"ledger/entries.jsonl": _member(bundle, "ledger/entries.jsonl")}):
        assert "subject_prev" in json.loads(base64.b64decode(line["canonical"]))


def test_an_entry_dropped_from_the_middle_of_a_history_is_a_named_gap(tmp_path, bundle):
    seqs = _seqs_about(SUBJECTS[0])
    dropped = seqs[3]
    result = run_verify(tmp_path, tamper_and_resign(bundle, _drop(dropped)))
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == (f"FAIL [subject-history] subject {SUBJECTS[0][0]}:{SUBJECTS[0][1]}: gap: seq "
                                       f"{dropped} is missing between seq {seqs[2]} and seq {seqs[4]}")


def test_the_first_entry_of_a_history_dropped_is_a_named_gap(tmp_path, bundle):
    seqs = _seqs_about(SUBJECTS[1])
    result = run_verify(tmp_path, tamper_and_resign(bundle, _drop(seqs[0])))
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == (f"FAIL [subject-history] subject {SUBJECTS[1][0]}:{SUBJECTS[1][1]}: gap: seq "
                                       f"{seqs[0]}, the entry before seq {seqs[1]}, is missing from the bundle (its "
                                       "first entry about the subject is not the first one)")


def test_a_bundle_without_the_cut_over_says_the_histories_were_not_checked(tmp_path, bundle):
    def strip(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        del manifest["subject_prev_from"]
        files["manifest.json"] = json.dumps(manifest).encode()

    result = run_verify(tmp_path, tamper_and_resign(bundle, strip))
    assert result.returncode == 0, result.stdout
    assert "subject histories: NOT checked" in verdict(result)


def test_a_cut_over_claimed_later_than_the_entries_is_refused(tmp_path, bundle):
    def move(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        manifest["subject_prev_from"] = 10
        files["manifest.json"] = json.dumps(manifest).encode()

    result = run_verify(tmp_path, tamper_and_resign(bundle, move))
    assert result.returncode == 1, result.stdout
    assert verdict(result).startswith("FAIL [subject-history] entry seq 1 has subject_prev, but the ledger's "
                                      "cut-over is seq 10")


def _member(bundle: bytes, name: str) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return archive.read(name)
