"""An upload handler that never spools an upload to disk in clear.

Django writes uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file while it parses
the request. Uploads here hold special categories of personal data, so this handler seals that
temporary file (core.sealed) under a key that exists only in this process's memory: a file left
behind by a crash is unreadable. The upload reads back as plaintext (``read``, ``chunks``, ``seek``),
and closing it removes the file.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from core import sealed


class SealedUploadedFile(UploadedFile):
    """A spooled upload, sealed on disk; reads give the plaintext."""

    def __init__(self, path: Path, data_key: bytes, **kwargs: Any) -> None:
        self._sealed_path = path
        reader = io.BufferedReader(sealed.SealedReader(open(path, "rb"), data_key=data_key), buffer_size=1 << 20)
        super().__init__(reader, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._sealed_path.unlink(missing_ok=True)


class SealingUploadHandler(FileUploadHandler):
    """Streams each file of a request into a sealed temporary file (after MemoryFileUploadHandler
    has declined it as too large)."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        folder = getattr(settings, "FILE_UPLOAD_TEMP_DIR", None) or tempfile.gettempdir()
        handle = tempfile.NamedTemporaryFile(dir=folder, prefix="upload-", suffix=".sealed", delete=False)
        self._path = Path(handle.name)
        self._data_key = sealed.new_data_key()
        self._writer = sealed.SealedWriter(handle, data_key=self._data_key, file_id=sealed.new_file_id(),
                                           hash_plaintext=False)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self._writer.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile:
        self._writer.close()
        return SealedUploadedFile(self._path, self._data_key, name=self.file_name, content_type=self.content_type,
                                  size=file_size, charset=self.charset, content_type_extra=self.content_type_extra)

    def upload_interrupted(self) -> None:
        if hasattr(self, "_writer"):
            self._writer.abort()
            self._path.unlink(missing_ok=True)
