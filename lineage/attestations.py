"""in-toto Statement v1 with an SLSA-provenance-v1-shaped predicate: build and parse (no ORM).

What we sign: the RFC 8785 (JCS) bytes of the Statement, as the DSSE payload, payloadType
`application/vnd.in-toto+json`. Specs: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
and https://slsa.dev/spec/v1.0/provenance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from audit import jcs

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE_SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE_LINEAGE = "https://governance.example.org/lineage/link/v1"
MAX_SUBJECTS = 1000

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class StatementError(ValueError):
    """The payload is not an in-toto Statement v1 we can use; `field` names the offending member."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def unstorable_reason(value: Any, *, path: str = "") -> tuple[str, str] | None:
    """(field path, reason) for the first string our databases cannot store: NUL or a lone surrogate.

    JSON allows both (`"\\u0000"`, `"\\ud800"`); PostgreSQL text and jsonb refuse them.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict):
            texts = [key for key in item if isinstance(key, str)]
            stack.extend((f"{where}.{key}" if where else str(key), child) for key, child in item.items())
        elif isinstance(item, list):
            texts = []
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
        else:
            continue
        for text in texts:
            if "\x00" in text:
                return where or "body", "contains a NUL character"
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body", "contains an unpaired UTF-16 surrogate"
    return None


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def resource(name: str, sha256: str, uri: str | None = None) -> dict[str, Any]:
    """An in-toto ResourceDescriptor naming one digest."""
    descriptor: dict[str, Any] = {"name": name, "digest": {"sha256": sha256}}
    if uri:
        descriptor["uri"] = uri
    return descriptor


def build_statement(*, subjects: Sequence[tuple[str, str]], build_type: str, external_parameters: Mapping[str, Any],
                    internal_parameters: Mapping[str, Any], resolved_dependencies: Sequence[Mapping[str, Any]],
                    builder_id: str, invocation_id: str, started_on: str | None = None,
                    finished_on: str | None = None, byproducts: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A Statement whose subjects are `(name, sha256 hex)` and whose predicate is SLSA provenance v1."""
    metadata: dict[str, Any] = {"invocationId": invocation_id}
    if started_on:
        metadata["startedOn"] = started_on
    if finished_on:
        metadata["finishedOn"] = finished_on
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha256}} for name, sha256 in subjects],
        "predicateType": PREDICATE_TYPE_SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": dict(external_parameters),
                "internalParameters": dict(internal_parameters),
                "resolvedDependencies": [dict(dep) for dep in resolved_dependencies],
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": metadata,
                "byproducts": [dict(item) for item in byproducts],
            },
        },
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """The exact payload bytes we sign: RFC 8785 canonical JSON."""
    return jcs.canonicalize(dict(statement))


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Parse and check a Statement; subjects must each carry a lowercase hex sha256 digest."""
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise StatementError("The payload is not UTF-8 JSON.", field="payload") from None
    if not isinstance(statement, dict):
        raise StatementError("The Statement must be a JSON object.", field="payload")
    # Valid UTF-8 JSON can spell NUL or a lone surrogate only as a backslash-u escape: no escape, no walk.
    problem = unstorable_reason(statement) if b"\\u" in payload else None
    if problem is not None:
        raise StatementError(f"The Statement {problem[1]}.", field=problem[0])
    if statement.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"_type must be {STATEMENT_TYPE}.", field="_type")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise StatementError("subject must be a non-empty list.", field="subject")
    if len(subjects) > MAX_SUBJECTS:
        raise StatementError(f"At most {MAX_SUBJECTS} subjects are accepted.", field="subject")
    for index, subject in enumerate(subjects):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict) or not is_sha256_hex(digest.get("sha256")):
            raise StatementError("Each subject needs a lowercase hex sha256 digest.",
                                 field=f"subject[{index}].digest.sha256")
        if not isinstance(subject.get("name", ""), str):
            raise StatementError("A subject name must be a string.", field=f"subject[{index}].name")
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise StatementError("predicateType must be a non-empty string.", field="predicateType")
    if "predicate" in statement and not isinstance(statement["predicate"], dict):
        raise StatementError("predicate must be an object.", field="predicate")
    return statement


def subject_digests(statement: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, sha256) of each subject of a parsed Statement."""
    return [(str(item.get("name", "")), item["digest"]["sha256"]) for item in statement["subject"]]


def dependency_digests(statement: Mapping[str, Any]) -> list[str]:
    """sha256 digests of the SLSA `resolvedDependencies`, if the predicate has them."""
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return []
    definition = predicate.get("buildDefinition")
    deps = definition.get("resolvedDependencies") if isinstance(definition, dict) else None
    if not isinstance(deps, list):
        return []
    found: list[str] = []
    for dep in deps:
        digest = dep.get("digest") if isinstance(dep, dict) else None
        if isinstance(digest, dict) and is_sha256_hex(digest.get("sha256")):
            found.append(digest["sha256"])
    return found
