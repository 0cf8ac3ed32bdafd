"""The sealed-file format: round trips, random access, and every way of tampering fails the tag."""

from __future__ import annotations

import io
import os

import pytest

from core import sealed

KEY = bytes(range(32))
FILE_ID = bytes(16)


def seal(data: bytes, *, chunk_size: int = 16, key: bytes = KEY, file_id: bytes = FILE_ID) -> bytes:
    sink = io.BytesIO()
    digest, size = sealed.seal_stream(io.BytesIO(data), sink, data_key=key, file_id=file_id, chunk_size=chunk_size)
    assert size == len(data)
    return sink.getvalue()


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    return sealed.SealedReader(io.BytesIO(blob), data_key=key).readall()


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 32, 33, 1000])
def test_round_trip_at_every_chunk_boundary(length: int) -> None:
    data = os.urandom(length)
    blob = seal(data)
    assert unseal(blob) == data
    chunks = max(1, -(-length // 16))
    assert len(blob) == sealed.HEADER_BYTES + length + 16 * chunks


def test_ciphertext_holds_no_plaintext() -> None:
    marker = b"MARKER-7f3a9c-unique" * 10
    assert b"MARKER" not in seal(marker, chunk_size=1 << 10)


def test_random_access_reads_match_the_plaintext() -> None:
    data = os.urandom(5000)
    reader = sealed.SealedReader(io.BytesIO(seal(data, chunk_size=64)), data_key=KEY)
    for start, length in [(0, 10), (63, 2), (64, 64), (4990, 100), (1234, 777)]:
        reader.seek(start)
        assert reader.read(length) == data[start:start + length]
    assert reader.seek(0, io.SEEK_END) == 5000
    assert reader.read(10) == b""
    buffered = io.BufferedReader(sealed.SealedReader(io.BytesIO(seal(data, chunk_size=64)), data_key=KEY))
    assert buffered.read() == data


def test_writer_reports_the_plaintext_digest() -> None:
    import hashlib

    sink = io.BytesIO()
    writer = sealed.SealedWriter(sink, data_key=KEY, file_id=FILE_ID, chunk_size=8, close_sink=False)
    for piece in (b"abc", b"defghijklmnop", b"", b"q"):
        writer.write(piece)
    writer.close()
    assert writer.plaintext_sha256 == hashlib.sha256(b"abcdefghijklmnopq").hexdigest()
    assert unseal(sink.getvalue()) == b"abcdefghijklmnopq"


def _fails(blob: bytes, key: bytes = KEY) -> str:
    with pytest.raises(sealed.SealError) as caught:
        unseal(blob, key)
    return str(caught.value)


@pytest.mark.parametrize("position", [sealed.HEADER_BYTES, sealed.HEADER_BYTES + 20, -1, 12])
def test_a_flipped_byte_anywhere_fails(position: int) -> None:
    blob = bytearray(seal(b"x" * 100))
    blob[position] ^= 0x01
    assert "authentication" in _fails(bytes(blob)) or "magic" in _fails(bytes(blob))


def test_a_flipped_header_byte_fails_every_chunk() -> None:
    blob = bytearray(seal(b"x" * 100))
    blob[10] ^= 0x01  # the chunk size field: the layout no longer fits
    with pytest.raises(sealed.SealError):
        unseal(bytes(blob))
    blob = bytearray(seal(b"x" * 100))
    blob[20] ^= 0x01  # the file id: associated data of every chunk
    assert "authentication" in _fails(bytes(blob))


def test_truncation_at_a_chunk_boundary_fails() -> None:
    blob = seal(b"y" * 100)  # 7 chunks of 16 (last holds 4)
    stride = 16 + sealed.TAG_BYTES
    assert "authentication" in _fails(blob[: sealed.HEADER_BYTES + 6 * stride])
    assert "truncated" in _fails(blob[: sealed.HEADER_BYTES])
    assert "truncated" in _fails(blob[: sealed.HEADER_BYTES + 6 * stride + 3])


def test_reordered_or_appended_chunks_fail() -> None:
    blob = seal(os.urandom(64))  # 4 full chunks
    stride = 16 + sealed.TAG_BYTES
    header, body = blob[: sealed.HEADER_BYTES], blob[sealed.HEADER_BYTES:]
    chunks = [body[i:i + stride] for i in range(0, len(body), stride)]
    swapped = header + chunks[1] + chunks[0] + b"".join(chunks[2:])
    assert "chunk 0" in _fails(swapped)
    assert "authentication" in _fails(blob + chunks[-1])


def test_a_chunk_from_another_file_under_the_same_key_fails() -> None:
    first = seal(b"a" * 40, file_id=b"\x01" * 16)
    second = seal(b"b" * 40, file_id=b"\x02" * 16)
    spliced = first[: sealed.HEADER_BYTES] + second[sealed.HEADER_BYTES:]
    assert "authentication" in _fails(spliced)


def test_wrong_key_fails() -> None:
    assert "not its key" in _fails(seal(b"secret"), key=bytes(32))


def test_not_a_sealed_file_is_named() -> None:
    assert "not a sealed file" in _fails(b"name,sex\nann,f\n" * 3)


def test_key_wrap_binds_file_and_kek() -> None:
    kek = os.urandom(32)
    kek_id = sealed.kek_id_of(kek)
    wrapped = sealed.wrap_key(kek=kek, kek_id=kek_id, file_id=FILE_ID, data_key=KEY)
    assert KEY not in wrapped
    assert sealed.unwrap_key(kek=kek, kek_id=kek_id, file_id=FILE_ID, wrapped=wrapped) == KEY
    with pytest.raises(sealed.SealError):
        sealed.unwrap_key(kek=kek, kek_id=kek_id, file_id=b"\x09" * 16, wrapped=wrapped)
    with pytest.raises(sealed.SealError):
        sealed.unwrap_key(kek=os.urandom(32), kek_id=kek_id, file_id=FILE_ID, wrapped=wrapped)
    with pytest.raises(sealed.SealError):
        sealed.unwrap_key(kek=kek, kek_id=kek_id, file_id=FILE_ID, wrapped=b"")


def test_pseudonym_is_keyed_and_stable() -> None:
    assert sealed.pseudonym("alice", key=KEY) == sealed.pseudonym("alice", key=KEY)
    assert sealed.pseudonym("alice", key=KEY) != sealed.pseudonym("alice", key=bytes(32))
    assert "alice" not in sealed.pseudonym("alice", key=KEY)


def test_pyarrow_reads_csv_and_parquet_through_the_reader() -> None:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    table = pa.table({"sex": ["f", "m"] * 5000, "y": list(range(10000))})
    sink = io.BytesIO()
    pa_parquet.write_table(table, sink, row_group_size=1000)
    blob = seal(sink.getvalue(), chunk_size=4096)
    parquet = pa_parquet.ParquetFile(sealed.SealedReader(io.BytesIO(blob), data_key=KEY))
    assert parquet.read().equals(table)
    csv_bytes = b"sex,y\n" + b"".join(b"f,%d\n" % i for i in range(10000))
    reader = pa_csv.open_csv(sealed.SealedReader(io.BytesIO(seal(csv_bytes, chunk_size=4096)), data_key=KEY))
    assert reader.read_all().num_rows == 10000
