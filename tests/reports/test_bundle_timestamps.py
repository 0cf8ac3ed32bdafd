"""Bundles carry RFC 3161 tokens of their checkpoints; verify.py checks them with `cryptography` alone.

The TSA is OpenSSL's `openssl ts -reply` (tests/tsa_server.py), with an RSA and with an EC key.
"""

from __future__ import annotations

import re

import pytest

from audit.models import CheckpointTimestamp
from tests.reports.bundle_helpers import (
    make_bundle,
    members,
    rezip,
    run_verify,
    seed_ledger,
    tamper_and_resign,
    verdict,
)
from tests.tsa_server import make_pki, start_tsa

pytestmark = [pytest.mark.django_db, pytest.mark.integration, pytest.mark.usefixtures("empty_ledger")]


@pytest.fixture(scope="module", params=["rsa", "ec"])
def local_tsa(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tsa = start_tsa(tmp_path_factory.mktemp(f"tsa-{request.param}"), request.param)
    yield tsa
    tsa.stop()


@pytest.fixture
def stamped(settings, local_tsa):  # type: ignore[no-untyped-def]
    settings.TSA_URL = local_tsa.url
    settings.TSA_CA_FILE = str(local_tsa.ca_file)
    seed_ledger()
    return make_bundle()


def _run(tmp_path, bundle: bytes, ca_file=None):  # type: ignore[no-untyped-def]
    """verify.py with the server's keys pinned, and the TSA's CA too when given."""
    args = [] if ca_file is None else ["--tsa-ca", str(ca_file)]
    return run_verify(tmp_path, bundle, *args)


def _token_names(bundle: bytes) -> list[str]:
    return sorted(name for name in members(bundle) if name.startswith("ledger/timestamps/"))


def test_an_exported_bundle_carries_tokens_that_verify_against_the_pinned_ca(tmp_path, stamped, local_tsa):
    names = _token_names(stamped)
    sizes = sorted({int(re.search(r"checkpoint-(\d+)-", name).group(1)) for name in names})
    # The bundle's checkpoint and the latest one each got a token at export.
    assert len(names) == 2 and len(sizes) == 2
    assert CheckpointTimestamp.objects.filter(checkpoint__tree_size__in=sizes).count() == 2
    result = _run(tmp_path, stamped, local_tsa.ca_file)
    assert result.returncode == 0, result.stdout
    lines = [line for line in verdict(result).splitlines() if "RFC 3161 token" in line]
    assert len(lines) == 2
    assert all("imprint = SHA-256 of the signed checkpoint, signed attributes and signature hold, chain to the "
               "pinned TSA CA" in line for line in lines)


def test_without_tsa_ca_the_tokens_are_checked_but_the_chain_is_said_unchecked(tmp_path, stamped):
    result = _run(tmp_path, stamped)
    assert result.returncode == 0, result.stdout
    assert "the TSA's certificate chain was NOT checked (no --tsa-ca)" in verdict(result)


def test_a_second_export_reuses_the_stored_tokens(stamped, local_tsa):
    asked = local_tsa.requests
    make_bundle()
    # Both checkpoints of the new bundle are the ones stamped already (the stamps' own ledger
    # entries are not about the bundle's subjects, so no newer checkpoint is needed).
    assert local_tsa.requests == asked


def test_a_tampered_token_fails(tmp_path, stamped, local_tsa):
    name = _token_names(stamped)[0]

    def flip_signature(files):  # type: ignore[no-untyped-def]
        token = bytearray(files[name])
        token[-1] ^= 0x01  # the last bytes of the token are the TSA's signature
        files[name] = bytes(token)

    result = _run(tmp_path, tamper_and_resign(stamped, flip_signature), local_tsa.ca_file)
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == f"FAIL [timestamp] {name}: the TSA's signature does not verify"


def test_a_token_whose_time_was_changed_fails_on_its_signed_digest(tmp_path, stamped, local_tsa):
    name = _token_names(stamped)[0]

    def change_year(files):  # type: ignore[no-untyped-def]
        token = files[name]
        at = token.index(b"\x18\x0f20")  # GeneralizedTime "20YYMMDDhhmmssZ"
        files[name] = token[:at + 2] + b"19" + token[at + 4:]

    result = _run(tmp_path, tamper_and_resign(stamped, change_year), local_tsa.ca_file)
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == f"FAIL [timestamp] {name}: the signed messageDigest does not match the TSTInfo"


def test_a_token_checked_against_the_wrong_ca_fails(tmp_path, stamped, local_tsa):
    other_ca, _, _ = make_pki(tmp_path, "ec", label="Other")
    result = _run(tmp_path, stamped, other_ca)
    assert result.returncode == 1, result.stdout
    assert "the TSA's certificate does not chain to a CA pinned with --tsa-ca" in verdict(result)


def test_a_token_over_another_checkpoint_fails_on_its_imprint(tmp_path, stamped, local_tsa):
    names = _token_names(stamped)
    # The latest checkpoint's token, presented as the bundle's checkpoint's.
    first, second = names

    def swap(files):  # type: ignore[no-untyped-def]
        files[first], files[second] = files[second], files[first]

    result = _run(tmp_path, tamper_and_resign(stamped, swap), local_tsa.ca_file)
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == (f"FAIL [timestamp] {first}: the message imprint is not SHA-256 of the "
                                       "checkpoint's signed note")


def test_tsa_ca_given_but_no_token_in_the_bundle_fails(tmp_path, settings, local_tsa):
    settings.TSA_URL = ""
    seed_ledger()
    bundle = make_bundle()
    assert not _token_names(bundle)
    result = _run(tmp_path, bundle, local_tsa.ca_file)
    assert result.returncode == 1, result.stdout
    assert verdict(result).strip() == ("FAIL [timestamp] --tsa-ca was given, but the bundle holds no timestamp token "
                                       "(ledger/timestamps/)")


def test_a_token_added_by_an_outsider_fails_the_manifest(tmp_path, stamped, local_tsa):
    name = _token_names(stamped)[0]
    files = members(stamped)
    files[name.replace("-0.tst", "-1.tst")] = files[name]
    result = _run(tmp_path, rezip(files), local_tsa.ca_file)
    assert result.returncode == 1, result.stdout
    assert verdict(result).startswith("FAIL [manifest] file not in the manifest")


def test_an_export_while_the_tsa_is_down_fails_rather_than_leave_the_token_out(settings, local_tsa):
    from core.errors import Unavailable

    settings.TSA_URL = "http://127.0.0.1:9/"  # discard port: connection refused
    settings.TSA_CA_FILE = str(local_tsa.ca_file)
    seed_ledger()
    with pytest.raises(Unavailable) as raised:
        make_bundle()
    assert raised.value.code == "tsa_unavailable"
    assert not CheckpointTimestamp.objects.exists()
