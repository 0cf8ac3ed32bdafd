"""Sealed files: AES-256-GCM in authenticated chunks, one random data key per file (pure; no ORM, no settings).

File format, version 1 (all integers big-endian)::

    header  = b"GVSEAL" 0x00 0x01 | chunk_size (u32) | file_id (16 random bytes)          28 bytes
    chunk i = AES-256-GCM(data_key, nonce_i, plaintext_i, aad=header)   len(plaintext_i) + 16 bytes
    nonce_i = i as 11 bytes | 0x01 on the last chunk, else 0x00

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds 1..chunk_size
bytes (0 only for an empty file), and there is always exactly one last chunk. The chunk index and the
final flag are in the nonce, and the header is the associated data of every chunk, so reordering,
dropping, truncating at a chunk boundary, appending, or moving a chunk between files all fail the
tag. A nonce never repeats under a key: the key is fresh per file (a rewrite takes a new key).
This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) with a per-file key.

The data key is stored wrapped (AES-256-GCM under a key-encryption key, the associated data naming
the file id and the KEK id), never in the file; destroying the wrapped key makes the file unreadable
(crypto-shredding). Re-wrapping under a new KEK leaves the file untouched.

Reading is random-access (``SealedReader`` is a seekable raw stream; Parquet readers seek), and holds
one chunk in memory at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"GVSEAL\x00\x01"
HEADER = struct.Struct(">8sI16s")
HEADER_BYTES = HEADER.size  # 28
TAG_BYTES = 16
KEY_BYTES = 32
DEFAULT_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 64 << 20
_WRAP_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed file or wrapped key failed to authenticate or is not in the format (never a partial read)."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_file_id() -> bytes:
    return os.urandom(16)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def wrap_key(*, kek: bytes, kek_id: str, file_id: bytes, data_key: bytes) -> bytes:
    """nonce (12) | AES-256-GCM(kek, data_key, aad = file_id | kek_id)."""
    if len(kek) != KEY_BYTES or len(data_key) != KEY_BYTES:
        raise SealError("keys must be 32 bytes")
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, file_id + kek_id.encode())


def unwrap_key(*, kek: bytes, kek_id: str, file_id: bytes, wrapped: bytes) -> bytes:
    if len(wrapped) != _WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES:
        raise SealError("the wrapped data key is missing or has the wrong length")
    try:
        return AESGCM(kek).decrypt(wrapped[:_WRAP_NONCE_BYTES], wrapped[_WRAP_NONCE_BYTES:], file_id + kek_id.encode())
    except InvalidTag:
        raise SealError("the wrapped data key does not authenticate under this key-encryption key") from None


def kek_id_of(kek: bytes) -> str:
    """A KEK's public name: the first 8 bytes of SHA-256 over a domain label and the key, in hex."""
    return hashlib.sha256(b"governance data KEK v1\x00" + kek).hexdigest()[:16]


def pseudonym(value: str, *, key: bytes) -> str:
    """The keyed hash that replaces a direct identifier: equal values stay equal (joins work), and
    without the key a value cannot be guessed back by hashing candidates."""
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def read_header(handle: BinaryIO) -> tuple[int, bytes]:
    """(chunk_size, file_id) of a sealed file; the handle is left just after the header."""
    raw = handle.read(HEADER_BYTES)
    if len(raw) != HEADER_BYTES:
        raise SealError("not a sealed file: shorter than its header")
    magic, chunk_size, file_id = HEADER.unpack(raw)
    if magic != MAGIC:
        raise SealError("not a sealed file (unknown magic or version)")
    if not 1 <= chunk_size <= MAX_CHUNK_BYTES:
        raise SealError("sealed file header names an impossible chunk size")
    return chunk_size, file_id


def is_sealed(handle: BinaryIO) -> bool:
    start = handle.tell()
    try:
        return handle.read(len(MAGIC)) == MAGIC
    finally:
        handle.seek(start)


class SealedWriter(io.RawIOBase):
    """Write plaintext, get a sealed file; ``close()`` writes the last chunk (nothing is final before it).

    ``plaintext_sha256`` and ``plaintext_bytes`` describe what was written, once closed.
    """

    def __init__(self, sink: BinaryIO, *, data_key: bytes, file_id: bytes, chunk_size: int = DEFAULT_CHUNK_BYTES,
                 close_sink: bool = True, hash_plaintext: bool = True) -> None:
        if len(data_key) != KEY_BYTES or len(file_id) != 16 or not 1 <= chunk_size <= MAX_CHUNK_BYTES:
            raise SealError("bad data key, file id or chunk size")
        self._sink = sink
        self._close_sink = close_sink
        self._aead = AESGCM(data_key)
        self._chunk_size = chunk_size
        self._header = HEADER.pack(MAGIC, chunk_size, file_id)
        self._buffer = bytearray(chunk_size)  # filled in place; encrypted only once more data shows it is not last
        self._fill = 0
        self._index = 0
        self._digest = hashlib.sha256() if hash_plaintext else None
        self.plaintext_bytes = 0
        self.plaintext_sha256 = ""
        sink.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed sealed file")
        view = memoryview(data).cast("B")
        if self._digest is not None:
            self._digest.update(view)
        size = len(view)
        self.plaintext_bytes += size
        position = 0
        while position < size:
            # A full buffer is written only when more data arrives: the last chunk is known at close.
            if self._fill == self._chunk_size:
                self._emit(self._buffer, final=False)
                self._fill = 0
            take = min(size - position, self._chunk_size - self._fill)
            self._buffer[self._fill:self._fill + take] = view[position:position + take]
            self._fill += take
            position += take
        return size

    def _emit(self, plaintext: bytes | bytearray, *, final: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._index, final), plaintext, self._header))
        self._index += 1

    def close(self) -> None:
        if self.closed:
            return
        self._emit(bytes(self._buffer[: self._fill]), final=True)
        self._buffer = bytearray()
        self.plaintext_sha256 = self._digest.hexdigest() if self._digest is not None else ""
        if self._close_sink:
            self._sink.close()
        else:
            self._sink.flush()
        super().close()

    def abort(self) -> None:
        """Close without writing the last chunk (the output stays unreadable)."""
        if not self.closed:
            if self._close_sink:
                self._sink.close()
            io.RawIOBase.close(self)


class SealedReader(io.RawIOBase):
    """A seekable plaintext view of a sealed file. Opening checks the header and the last chunk (so a
    truncated file is refused before any byte is returned); each chunk is authenticated before use."""

    def __init__(self, source: BinaryIO, *, data_key: bytes, close_source: bool = True) -> None:
        self._source = source
        self._close_source = close_source
        source.seek(0)
        self._chunk_size, self.file_id = read_header(source)
        self._header = HEADER.pack(MAGIC, self._chunk_size, self.file_id)
        try:
            self._aead = AESGCM(data_key)
        except ValueError:
            raise SealError("the data key has the wrong length") from None
        body = source.seek(0, io.SEEK_END) - HEADER_BYTES
        stride = self._chunk_size + TAG_BYTES
        self._chunks = -(-body // stride) if body > 0 else 0
        last = body - (self._chunks - 1) * stride if self._chunks else 0
        if self._chunks == 0 or last < TAG_BYTES or (last == TAG_BYTES and self._chunks > 1):
            raise SealError("the sealed file is truncated")
        self.size = body - self._chunks * TAG_BYTES
        self._position = 0
        self._cached_index = -1
        self._cached = b""
        self._load(self._chunks - 1)

    def _load(self, index: int) -> bytes:
        if index != self._cached_index:
            stride = self._chunk_size + TAG_BYTES
            self._source.seek(HEADER_BYTES + index * stride)
            ciphertext = self._source.read(stride)
            final = index == self._chunks - 1
            try:
                self._cached = self._aead.decrypt(_nonce(index, final), ciphertext, self._header)
            except InvalidTag:
                raise SealError(f"chunk {index} of the sealed file fails authentication: the file was altered, "
                                "truncated, or this is not its key") from None
            self._cached_index = index
        return self._cached

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self.size:
            index, offset = divmod(self._position, self._chunk_size)
            chunk = self._load(index)
            take = min(len(chunk) - offset, len(view) - written)
            view[written:written + take] = chunk[offset:offset + take]
            written += take
            self._position += take
        return written

    def readall(self) -> bytes:
        parts = []
        while self._position < self.size:
            index, offset = divmod(self._position, self._chunk_size)
            chunk = self._load(index)
            parts.append(chunk[offset:])
            self._position += len(chunk) - offset
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed and self._close_source:
            self._source.close()
        self._cached = b""
        super().close()


def seal_stream(source: BinaryIO, sink: BinaryIO, *, data_key: bytes, file_id: bytes,
                chunk_size: int = DEFAULT_CHUNK_BYTES) -> tuple[str, int]:
    """Seal everything ``source`` yields into ``sink``; (plaintext SHA-256 hex, plaintext bytes)."""
    writer = SealedWriter(sink, data_key=data_key, file_id=file_id, chunk_size=chunk_size, close_sink=False)
    while block := source.read(chunk_size):
        writer.write(block)
    writer.close()
    return writer.plaintext_sha256, writer.plaintext_bytes


class SealedPath:
    """A sealed file on disk together with its data key: the part of ``pathlib.Path`` the data readers
    use (``name``, ``open``, ``is_file``, ``unlink``), opening a plaintext view. It has no
    ``__fspath__`` on purpose, so no library can read the ciphertext by path by mistake."""

    def __init__(self, path: os.PathLike[str] | str, *, data_key: bytes, file_id: bytes | None = None) -> None:
        from pathlib import Path

        self.path = Path(path)
        self._data_key = data_key
        self.file_id = file_id

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"SealedPath({self.path.name!r})"

    def is_file(self) -> bool:
        return self.path.is_file()

    def open(self, mode: str = "rb", buffering: int = 1 << 20) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("a sealed file opens for reading only")
        reader = SealedReader(open(self.path, "rb"), data_key=self._data_key)
        if self.file_id is not None and reader.file_id != self.file_id:
            reader.close()
            raise SealError("the sealed file is not the one its record names (file id differs)")
        return io.BufferedReader(reader, buffer_size=buffering)

    def size(self) -> int:
        with self.open() as handle:
            return handle.raw.size  # type: ignore[attr-defined,no-any-return]

    def unlink(self, missing_ok: bool = False) -> None:
        self.path.unlink(missing_ok=missing_ok)


def open_plain(path: SealedPath | os.PathLike[str] | str) -> BinaryIO:
    """The plaintext bytes of a sealed file or of an ordinary one."""
    return path.open() if isinstance(path, SealedPath) else open(path, "rb")


def arrow_source(path: SealedPath | os.PathLike[str] | str) -> object:
    """What to hand a pyarrow reader: the path of an ordinary file (read natively), or a plaintext
    stream of a sealed one."""
    return path.open() if isinstance(path, SealedPath) else path
