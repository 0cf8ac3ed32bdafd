"""Artifact digest manifests: validation and the one digest over a manifest.

A manifest maps each artifact file path to the lowercase hex SHA-256 of its bytes. The
manifest digest is the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of that mapping, so
anyone can recompute it from the manifest alone, in any language.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from audit import jcs

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_FILES = 10_000
MAX_PATH_CHARS = 1024


class ManifestError(ValueError):
    """The manifest is not a mapping of file paths to SHA-256 hex digests."""


def validate_manifest(manifest: Any) -> dict[str, str]:
    """Return the manifest unchanged if it is well formed, else raise ManifestError naming the problem."""
    if not isinstance(manifest, dict) or not manifest:
        raise ManifestError("The manifest must be a non-empty object mapping file paths to SHA-256 digests.")
    if len(manifest) > MAX_MANIFEST_FILES:
        raise ManifestError(f"The manifest lists more than {MAX_MANIFEST_FILES} files.")
    for path, digest in manifest.items():
        if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
            raise ManifestError(f"Manifest path {path!r} must be a non-empty string of at most {MAX_PATH_CHARS} chars.")
        if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
            raise ManifestError(f"Manifest path {path!r} must be relative, with '/' separators and no '.' or '..'.")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ManifestError(f"The digest of {path!r} must be 64 lowercase hex characters (SHA-256).")
    return manifest


def manifest_digest(manifest: dict[str, str]) -> str:
    """Hex SHA-256 of the JCS canonical bytes of the manifest."""
    return hashlib.sha256(jcs.canonicalize(manifest)).hexdigest()
