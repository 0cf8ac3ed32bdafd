"""audit.jcs against the reference RFC 8785 encoder (`rfc8785`), numbers first."""

from __future__ import annotations

import math
import random
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import jcs


def _random_doubles(rng: random.Random, count: int) -> list[float]:
    """Finite doubles from uniformly random bit patterns: every exponent is equally likely."""
    values = []
    while len(values) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            values.append(value)
    return values


def _doubles_near_the_thresholds(rng: random.Random, count: int) -> list[float]:
    """Around 1e-7, 1e-4, 1, 2**52, 2**53, 1e16 and 1e21, where the spellings change."""
    values = []
    for centre in (1e-7, 1e-6, 1e-4, 1.0, 2.0**52, 2.0**53, 1e16, 1e21):
        for _ in range(count):
            values.append(centre * rng.uniform(0.5, 2.0))
            values.append(-centre * rng.uniform(0.5, 2.0))
        values.extend([centre, -centre, math.nextafter(centre, 0), math.nextafter(centre, math.inf)])
    # Integral values of every size, and short decimals of the kind metrics produce.
    values.extend(float(rng.randrange(-(2**60), 2**60)) for _ in range(count))
    values.extend(round(rng.random(), rng.randrange(1, 8)) for _ in range(count))
    values.extend([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2,
                   1e-4 - 1e-20, 9.999999999999999e20, 123456789012345680.0, 4.35, 0.000001, 1e-7])
    return values


@pytest.mark.parametrize("source", ["random bits", "thresholds"])
def test_numbers_match_the_reference_encoder(source: str) -> None:
    rng = random.Random(8785)
    values = _random_doubles(rng, 100_000) if source == "random bits" else _doubles_near_the_thresholds(rng, 5_000)
    mismatches = [(value, jcs.canonicalize(value), rfc8785.dumps(value)) for value in values
                  if jcs.canonicalize(value) != rfc8785.dumps(value)]
    assert mismatches == []


def test_documents_with_floats_match_the_reference_encoder() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        document = {
            "metrics": {f"m{index}": rng.choice([rng.random(), float(rng.randrange(100)), rng.random() * 1e-5, None])
                        for index in range(6)},
            "groups": [[rng.random(), rng.randrange(-(2**53) + 1, 2**53), True, "a\"\\\n\u2028é"]
                       for _ in range(3)],
            "ratio": rng.choice([1.0, -0.0, 0.8, 2.5e-3, 7e22]),
        }
        assert jcs.canonicalize(document) == rfc8785.dumps(document)


def test_typical_metric_payloads_take_the_fast_path() -> None:
    payload = {"selection_rate": {"A": 0.4123, "B": 0.38}, "ratio": 1.0, "count": 1000, "ok": True}
    assert jcs._scan(payload) == jcs._YES_AFTER_INTEGRAL_FLOATS
    assert jcs._scan({"selection_rate": 0.4123}) == jcs._YES
    assert jcs._scan({"p": 3e-9}) == jcs._NO  # repr and ECMAScript differ: the reference encoder writes it
    assert jcs._scan({"é": 1}) == jcs._NO


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_non_finite_numbers_are_refused(value: object) -> None:
    with pytest.raises(jcs.CanonicalizationError):
        jcs.canonicalize(value)


# --- The fast path against the reference on generated values of every kind ----------------

_SPECIAL_CHARACTERS = ['"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\x80", "\u2028",
                       "\u2029", "\ud800", "\udfff", "\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff",
                       "é", "€"]
_text = st.text(st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(_SPECIAL_CHARACTERS)),
                max_size=12)
_keys = st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6), _text)
_integers = st.one_of(st.integers(-(2**53) - 3, 2**53 + 3), st.integers(), st.sampled_from(
    [2**53 - 1, 2**53, 2**53 + 1, -(2**53) + 1, -(2**53), 0, -1, 2**63, -(2**64)]))
_floats = st.one_of(st.floats(), st.floats(-1e-3, 1e-3), st.sampled_from(
    [1e-7, 1e-6, 1e-4, 1e-4 - 1e-20, 5e-324, 2.0**52 + 0.5, 2.0**53, 2.0**53 + 2, 1e16, 1e21, 9.999999999999999e20,
     -0.0, 0.0, 100.0, 0.1 + 0.2, 1.7976931348623157e308]))
_scalars = st.one_of(st.none(), st.booleans(), _integers, _floats, _text)
_values = st.recursive(_scalars, lambda children: st.one_of(
    st.lists(children, max_size=5), st.tuples(children, children), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=30)


def _reference(value: object) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


@settings(max_examples=4_000, deadline=None, derandomize=True)
@given(_values)
def test_generated_values_match_the_reference_encoder(value: object) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(jcs.CanonicalizationError):
            jcs.canonicalize(value)
    else:
        assert jcs.canonicalize(value) == expected


def test_strings_take_the_fast_path_and_lone_surrogates_are_refused() -> None:
    text = "".join(character for character in _SPECIAL_CHARACTERS if character not in ("\ud800", "\udfff"))
    document = {"name": text, "list": [text, {"nested": text}], "n": 2**53 - 1}
    assert jcs._scan(document) == jcs._YES
    assert jcs.canonicalize(document) == rfc8785.dumps(document)
    assert jcs.canonicalize(text) == rfc8785.dumps(text)
    for lone in ("\ud800", "a\udfffb", {"k": ["\ud834"]}):
        with pytest.raises(jcs.CanonicalizationError):
            jcs.canonicalize(lone)
    assert jcs._scan({"k": 2**53}) == jcs._NO
    assert jcs._scan({"k": [1.0, {"x": 2.5}]}) == jcs._YES_AFTER_INTEGRAL_FLOATS


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(st.dictionaries(_keys, _values, max_size=4), _values)
def test_an_object_encoded_member_by_member_is_the_same_bytes(members: dict[str, object], shared: object) -> None:
    members = {**members, "after": shared, "state": shared}
    expected = _reference(members)
    if expected is None:
        with pytest.raises(jcs.CanonicalizationError):
            jcs.canonicalize_members(members)
    else:
        assert jcs.canonicalize_members(members) == expected


def test_scalars_are_written_directly_and_containers_by_the_encoder_made_once() -> None:
    # On the supported Python the C encoder is made once (not per call) and gives the same bytes.
    assert jcs._encode is not jcs._fast_encoder.encode
    document = {"b": [1, -0.5, None, True, "é\n"], "a": {"z": [], "y": 12.25}}
    assert jcs._encode(document) == jcs._fast_encoder.encode(document)
    assert jcs.canonicalize(document) == rfc8785.dumps(document)
    values = (None, True, False, 0, -1, 2**53 - 1, -(2**53 - 1))
    assert [jcs.canonicalize(value) for value in values] == [
        b"null", b"true", b"false", b"0", b"-1", b"9007199254740991", b"-9007199254740991"]
    assert [jcs.canonicalize(value) for value in values] == [rfc8785.dumps(value) for value in values]
    members = {"state": {"k": 1}, "before": None, "after": {"k": 1}}
    assert jcs.canonicalize_members(members) == jcs.canonicalize_members(dict(members)) == rfc8785.dumps(members)
