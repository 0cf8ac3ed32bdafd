"""verify.py parses the zip itself and refuses any structure two zip readers could read differently.

The malicious zips are built byte by byte here (local headers, central directory, end record), so
each test controls exactly the one property it breaks.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from tests.reports.bundle_helpers import make_bundle, members, run_verify, seed_ledger, verdict

pytestmark = pytest.mark.django_db


def local_header(name: bytes, data: bytes, *, crc: int | None = None, size: int | None = None,
                 method: int = 0) -> bytes:
    crc = zlib.crc32(data) if crc is None else crc
    size = len(data) if size is None else size
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size,
                       len(name), 0) + name


def central_entry(name: bytes, data: bytes, offset: int) -> bytes:
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                       len(data), len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def build_zip(files: list[tuple[bytes, bytes]], *, local_names: dict[bytes, bytes] | None = None,
              local_crc: dict[bytes, int] | None = None, local_size: dict[bytes, int] | None = None,
              offsets: dict[int, int] | None = None) -> bytes:
    """A stored zip written by hand; the keyword arguments make one local header or offset lie."""
    body = b""
    directory = b""
    starts: list[int] = []
    for name, data in files:
        starts.append(len(body))
        shown = (local_names or {}).get(name, name)
        body += local_header(shown, data, crc=(local_crc or {}).get(name), size=(local_size or {}).get(name)) + data
    for index, (name, data) in enumerate(files):
        directory += central_entry(name, data, (offsets or {}).get(index, starts[index]))
    return body + directory + end_record(len(files), len(directory), len(body))


@pytest.fixture
def genuine() -> bytes:
    seed_ledger()
    return make_bundle()


def genuine_files(bundle: bytes) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), data) for name, data in members(bundle).items()]


def assert_zip_refused(result, words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, result.stdout + result.stderr
    assert verdict(result).startswith("FAIL [zip] "), result.stdout
    assert words in result.stdout, result.stdout


def test_a_hand_built_zip_of_the_genuine_files_verifies(tmp_path, genuine):
    # The control: the same files, written by this test's own zip writer, pass.
    result = run_verify(tmp_path, build_zip(genuine_files(genuine)))
    assert result.returncode == 0, result.stdout


def test_bytes_before_the_first_local_header_are_refused(tmp_path, genuine):
    assert_zip_refused(run_verify(tmp_path, b"#!/bin/sh\nexit 0\n" + genuine),
                       "before the first local header or between the data and the central directory")


def test_a_zip_prepended_to_a_genuine_bundle_is_refused(tmp_path, genuine):
    forged = build_zip([(b"report/report.json", b'{"verdict": "all fine"}\n')])
    assert_zip_refused(run_verify(tmp_path, forged + genuine), "central directory is not where the end record puts it")


def test_bytes_after_the_end_record_are_refused(tmp_path, genuine):
    assert_zip_refused(run_verify(tmp_path, genuine + b"trailing"), "byte(s) after the end-of-central-directory record")


def test_a_zip_appended_after_the_end_record_is_refused(tmp_path, genuine):
    extra = build_zip([(b"VERIFY.md", b"run me\n")])
    result = run_verify(tmp_path, genuine + extra)
    # The appended zip's own end record ends the file now: its directory does not sit before it.
    assert_zip_refused(result, "central directory is not where the end record puts it")


def test_overlapping_members_are_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    # Two central-directory entries point at the same local header (the second member's).
    files_with_twin = files + [(files[1][0], files[1][1])]
    body = b""
    starts = []
    for name, data in files:
        starts.append(len(body))
        body += local_header(name, data) + data
    directory = b"".join(central_entry(name, data, starts[index]) for index, (name, data) in enumerate(files))
    directory += central_entry(b"keys/twin.pem", files[1][1], starts[1])
    data = body + directory + end_record(len(files_with_twin), len(directory), len(body))
    assert_zip_refused(run_verify(tmp_path, data), "overlap")


def test_a_gap_between_members_is_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    body = b""
    starts = []
    for index, (name, data) in enumerate(files):
        if index == 2:
            body += b"HIDDEN"
        starts.append(len(body))
        body += local_header(name, data) + data
    directory = b"".join(central_entry(name, data, starts[index]) for index, (name, data) in enumerate(files))
    result = run_verify(tmp_path, body + directory + end_record(len(files), len(directory), len(body)))
    assert_zip_refused(result, "6 byte(s) between members")


def test_a_local_header_with_another_name_is_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    name = files[0][0]
    forged = build_zip(files, local_names={name: name[:-1] + b"X"})
    assert_zip_refused(run_verify(tmp_path, forged), "the local header differs from the central directory: name")


def test_a_local_header_with_another_crc_is_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    forged = build_zip(files, local_crc={files[0][0]: 0x12345678})
    assert_zip_refused(run_verify(tmp_path, forged), "differs from the central directory: CRC-32 12345678")


def test_a_local_header_with_another_size_is_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    forged = build_zip(files, local_size={files[0][0]: len(files[0][1]) + 1})
    assert_zip_refused(run_verify(tmp_path, forged), f"differs from the central directory: size {len(files[0][1]) + 1}")


def test_a_local_header_with_another_method_is_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    data = build_zip(files)
    # The first local header's method field (offset 8) says deflate; its directory entry says stored.
    data = data[:8] + struct.pack("<H", 8) + data[10:]
    assert_zip_refused(run_verify(tmp_path, data), "differs from the central directory: method 8")


def test_duplicate_names_are_refused(tmp_path, genuine):
    files = genuine_files(genuine)
    forged = build_zip(files + [(files[0][0], b"another body\n")])
    assert_zip_refused(run_verify(tmp_path, forged), f"member {files[0][0].decode()!r} appears twice")
