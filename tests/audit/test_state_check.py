"""The state check across a migration that adds a field: absent from older entries, not a difference while default."""

from __future__ import annotations

from audit.capture.rows import model_spec
from audit.capture.state import differing_fields
from tests.govtestapp.models import Widget


def _compared() -> list:
    return [field_spec for field_spec in model_spec(Widget).fields if not field_spec.redacted]


def _live(**overrides: object) -> dict[str, object]:
    state = {field_spec.name: None for field_spec in _compared()}
    state.update(name="a", description="", size=0, price="0.00", ratio=0.0, active=True)
    state.update(overrides)
    return state


def test_a_field_added_later_still_at_its_default_is_not_a_difference() -> None:
    recorded = _live()
    del recorded["size"]  # the entry was written before the migration that added `size` (default 0)
    assert differing_fields(_compared(), recorded, _live()) == []


def test_a_field_added_later_and_changed_outside_the_orm_is_named() -> None:
    recorded = _live()
    del recorded["size"]
    assert differing_fields(_compared(), recorded, _live(size=99)) == ["size"]


def test_a_recorded_field_is_compared_with_its_recorded_value_not_the_default() -> None:
    assert differing_fields(_compared(), _live(size=7), _live(size=0)) == ["size"]
    assert differing_fields(_compared(), _live(size=7), _live(size=7)) == []


def test_a_nullable_field_without_default_added_later_counts_as_null() -> None:
    recorded = _live()
    del recorded["released_on"]
    assert differing_fields(_compared(), recorded, _live()) == []
    assert differing_fields(_compared(), recorded, _live(released_on="2026-01-01")) == ["released_on"]
