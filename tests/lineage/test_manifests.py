"""The one manifest digest (lineage.manifests): every rejection both former copies made, and the
codes lineage keeps (invalid_manifest, invalid_digest). tests/governance/test_services.py runs the
same table through model-version registration (code manifest_invalid)."""

from __future__ import annotations

import hashlib
import json

import pytest

from core.errors import InvalidInput
from lineage import manifests

GOOD = "a" * 64

# (why, manifest, the fault is a digest): governance/digests.py's test cases, lineage/services.py's
# rules, and the stricter rules the merged implementation takes from each.
REJECTED = [
    ("empty", {}, False),                                   # both
    ("not a mapping", ["a"], False),                        # governance test
    ("not hex", {"a": "xyz"}, True),                        # governance test
    ("upper-case hex", {"a": "A" * 64}, True),              # governance test
    ("digest not a string", {"a": 5}, True),
    ("parent segment", {"../x": GOOD}, False),              # both
    ("parent segment inside", {"a/../b": GOOD}, False),     # both
    ("absolute", {"/etc/passwd": GOOD}, False),             # both
    ("current segment", {"./a": GOOD}, False),              # governance only, now both
    ("current segment inside", {"a/./b": GOOD}, False),     # governance only, now both
    ("backslash", {"a\\b": GOOD}, False),                   # governance only, now both
    ("windows parent", {"..\\x": GOOD}, False),             # governance only, now both
    ("empty segment", {"a//b": GOOD}, False),               # governance only, now both
    ("trailing slash", {"a/": GOOD}, False),                # governance only, now both
    ("empty path", {"": GOOD}, False),                      # both
    ("path not a string", {5: GOOD}, False),                # both
    ("path too long", {"a" * (manifests.MAX_PATH_CHARS + 1): GOOD}, False),  # governance only, now both
    ("too many files", {f"f{index}": GOOD for index in range(manifests.MAX_MANIFEST_FILES + 1)}, False),
]
IDS = [why for why, _, _ in REJECTED]


@pytest.mark.parametrize("why,manifest,digest_fault", REJECTED, ids=IDS)
def test_manifest_is_rejected(why, manifest, digest_fault):
    with pytest.raises(manifests.ManifestError) as excinfo:
        manifests.manifest_digest(manifest)
    assert excinfo.value.digest_invalid is digest_fault


def test_limits_are_the_stricter_of_the_two_former_copies():
    assert manifests.MAX_MANIFEST_FILES == 10_000 and manifests.MAX_PATH_CHARS == 1024
    at_limit = {f"f{index}": GOOD for index in range(manifests.MAX_MANIFEST_FILES)}
    assert len(manifests.manifest_digest(at_limit)) == 64
    assert manifests.manifest_digest({"a" * manifests.MAX_PATH_CHARS: GOOD})


def test_digest_is_sha256_of_the_jcs_manifest_whatever_the_key_order():
    manifest = {"part-1.parquet": "1" * 64, "dir/part-0.parquet": "0" * 64, "dir.v2/x": GOOD}
    expected = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert manifests.manifest_digest(manifest) == expected
    assert manifests.manifest_digest(dict(reversed(list(manifest.items())))) == expected


@pytest.mark.parametrize("why,manifest,digest_fault", REJECTED, ids=IDS)
def test_lineage_service_keeps_its_codes(why, manifest, digest_fault):
    from lineage.services.datasets import manifest_digest

    with pytest.raises(InvalidInput) as excinfo:
        manifest_digest(manifest)
    assert excinfo.value.code == ("invalid_digest" if digest_fault else "invalid_manifest")
    field = excinfo.value.extra["field"]
    assert field.startswith("manifest[") if digest_fault else field == "manifest"
