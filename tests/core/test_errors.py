"""The one registry of error codes: unregistered codes are refused, every code in the source is
registered, and the registry's status is the status the handler sends. No database."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework import exceptions as drf_exceptions

from core.errors import (
    _DRF_CODES,
    Conflict,
    ErrorCode,
    InvalidInput,
    NotFound,
    ServiceError,
    api_exception_handler,
    json_error,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("core", "audit", "lineage", "governance")
# Callables that take an error code positionally, and where: FairnessInputError(code, message),
# json_error(code, ...), error_body(code, ...), lineage's _refuse(code, ...), fairness's
# _finish_failed(run_id, attempt, code, message).
POSITIONAL_CODE_ARGUMENT = {"FairnessInputError": 0, "json_error": 0, "error_body": 0, "_refuse": 0, "_finish_failed": 2}
# Modules that define ServiceError subclasses, imported so that every subclass is checked.
MODULES_WITH_ERRORS = ("governance.registry.services.common", "governance.fairness.services", "lineage.openlineage")


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _source_files() -> Iterator[Path]:
    for package in SOURCE_PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _code_literals() -> Iterator[tuple[str, str, ast.Call]]:
    """(code, where, call) for each string literal passed as an error code anywhere in the source."""
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
                    yield keyword.value.value, where, node
            index = POSITIONAL_CODE_ARGUMENT.get(_callee(node))
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    yield argument.value, where, node


def _service_error_classes() -> list[type[ServiceError]]:
    for module in MODULES_WITH_ERRORS:
        importlib.import_module(module)
    found, stack = [], [ServiceError]
    while stack:
        klass = stack.pop()
        found.append(klass)
        stack.extend(klass.__subclasses__())
    return found


# --- (a) a code that is not registered is refused ---------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: ServiceError("m", code="not_a_registered_code"),
    lambda: NotFound("m", code="modle_not_found"),  # a typo
    lambda: json_error("no_such_code", "m", 400),
], ids=["ServiceError", "subclass", "json_error"])
def test_an_unregistered_code_is_refused_when_the_error_is_made(make):
    with pytest.raises(ValueError, match="Unregistered error code"):
        make()


def test_a_subclass_with_an_unregistered_code_is_refused_when_it_is_defined():
    with pytest.raises(ValueError, match="Unregistered error code"):
        type("Typo", (Conflict,), {"code": "conflcit"})


def test_the_code_is_kept_as_a_plain_string():
    error = InvalidInput("m", code=ErrorCode.INVALID_PARAMETER)
    assert error.code == "invalid_parameter" and type(error.code) is str


# --- (b) every code in the source is registered -------------------------------------------------

def test_every_code_literal_in_the_source_is_registered():
    found = {code: where for code, where, _ in _code_literals()}
    assert len(found) > 100, "the scan found too few codes; is it still looking in the right places?"
    unregistered = {code: where for code, where in found.items() if code not in ErrorCode.__members__.values()}
    assert not unregistered, f"add these codes to core.errors.ErrorCode: {unregistered}"


def test_every_service_error_class_code_is_registered():
    for klass in _service_error_classes():
        assert klass.code in ErrorCode.__members__.values(), klass


# --- (c) the handler sends a registered code with the registry's status ----------------------

@pytest.mark.parametrize(("error", "code"), [
    (NotFound("No model named 'x'.", code="model_not_found"), ErrorCode.MODEL_NOT_FOUND),
    (Conflict("Taken.", code="model_name_taken", extra={"name": "x"}), ErrorCode.MODEL_NAME_TAKEN),
    (InvalidInput("Bad.", code="attestation_subject_mismatch", status_code=422), ErrorCode.ATTESTATION_SUBJECT_MISMATCH),
    (drf_exceptions.Throttled(wait=3), ErrorCode.RATE_LIMITED),
    (drf_exceptions.NotAuthenticated(), ErrorCode.NOT_AUTHENTICATED),
])
def test_the_handler_renders_a_registered_code_with_its_status(error, code):
    response = api_exception_handler(error, {})
    assert response is not None
    assert (response.status_code, response.data["code"]) == (code.status, code.value)
    assert set(response.data) == {"code", "message", "extra"}


def test_each_error_class_is_sent_with_the_status_its_code_is_registered_with():
    for klass in _service_error_classes():
        response = api_exception_handler(klass("m"), {})
        assert response is not None and response.status_code == ErrorCode(klass.code).status, klass


def test_each_raise_site_sends_the_status_its_code_is_registered_with():
    status_of_class = {klass.__name__: klass.status_code for klass in _service_error_classes()}
    checked, wrong = 0, []
    for code, where, call in _code_literals():
        callee = _callee(call)
        explicit = next((keyword.value for keyword in call.keywords if keyword.arg == "status_code"), None)
        if callee == "json_error" and len(call.args) > 2:
            explicit = call.args[2]
        if explicit is not None:
            if not isinstance(explicit, ast.Constant):
                continue
            sent = explicit.value
        elif callee in status_of_class:
            sent = status_of_class[callee]
        else:
            continue
        checked += 1
        if sent != ErrorCode(code).status:
            wrong.append((where, code, sent, ErrorCode(code).status))
    assert checked > 100 and not wrong, wrong


def test_drf_exceptions_are_sent_with_the_status_their_code_is_registered_with():
    for klass, code in _DRF_CODES.items():
        assert klass.status_code == ErrorCode(code).status, klass
