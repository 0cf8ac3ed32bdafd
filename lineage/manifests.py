"""Folder and artifact manifests: the one validation and the one digest (no ORM, no settings).

A manifest maps each file's relative path to the lowercase hex SHA-256 of its bytes. Its digest
is the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of that mapping, so anyone can recompute
it from the manifest alone, in any language. Lineage uses it for folder dataset versions and
governance for model-version artifacts; each turns `ManifestError` into its own error code.

The rules are the stricter of the two copies this module replaced: at most 10,000 files (nothing
needed more), paths of at most 1,024 characters, relative, '/'-separated, with no empty, '.' or
'..' segment and no backslash, so a path names exactly one file under the folder on every platform.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from audit import jcs

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_FILES = 10_000
MAX_PATH_CHARS = 1024


class ManifestError(ValueError):
    """The manifest is not a mapping of safe relative paths to SHA-256 hex digests.

    `path` names the offending entry (None when the whole manifest is wrong); `digest_invalid`
    says the fault is that entry's digest rather than its path.
    """

    def __init__(self, message: str, *, path: str | None = None, digest_invalid: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.digest_invalid = digest_invalid


def validate_manifest(manifest: Any) -> dict[str, str]:
    """The manifest as a plain dict if it is well formed, else raise ManifestError naming the problem."""
    if not isinstance(manifest, Mapping) or not manifest:
        raise ManifestError("The manifest must be a non-empty object mapping file paths to SHA-256 digests.")
    if len(manifest) > MAX_MANIFEST_FILES:
        raise ManifestError(f"The manifest lists more than {MAX_MANIFEST_FILES} files.")
    for path, digest in manifest.items():
        if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
            raise ManifestError(f"Manifest path {path!r} must be a non-empty string of at most {MAX_PATH_CHARS} chars.",
                                path=str(path)[:200])
        if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
            raise ManifestError(f"Manifest path {path!r} must be relative, with '/' separators and no '.' or '..'.",
                                path=path[:200])
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ManifestError(f"The digest of {path!r} must be 64 lowercase hex characters (SHA-256).",
                                path=path, digest_invalid=True)
    return dict(manifest)


def manifest_digest(manifest: Any) -> str:
    """Validate the manifest, then return the hex SHA-256 of its JCS canonical bytes."""
    return hashlib.sha256(jcs.canonicalize(validate_manifest(manifest))).hexdigest()
