"""Errors with stable codes, the one registry of those codes, and the one DRF handler that renders
every API error.

Every error body is `{"code": "...", "message": "...", "extra": {...}}`. Services raise
`ServiceError` subclasses; views never build error bodies themselves. Every code is a member of
`ErrorCode`; a `ServiceError` (or an error body) with any other code is refused when it is made,
so a typo cannot invent a code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every error code the service sends or records: its HTTP status and what it means.

    `status` is the status the code is sent with; None for the few that are never an error
    response of their own (a failed audit run records them; `api_error` keeps the status of the
    DRF exception it stands for).
    """

    status: int | None
    description: str

    def __new__(cls, code: str, status: int | None, description: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.description = description
        return member

    # --- Generic: the base classes below, query parameters, the handlers -----------------------
    SERVICE_ERROR = "service_error", 400, "A refused operation with no more specific code."
    INVALID_INPUT = "invalid_input", 400, "The body or one of its fields is not valid; extra names the field(s)."
    NOT_FOUND = "not_found", 404, "No such resource, or one the caller may not see."
    PERMISSION_DENIED = "permission_denied", 403, "The caller may not do this."
    CONFLICT = "conflict", 409, "The operation conflicts with the current state."
    SERVICE_UNAVAILABLE = "service_unavailable", 503, "Something the operation needs is unavailable; retry later."
    INVALID_PARAMETER = "invalid_parameter", 400, "A query parameter is not valid; extra names it."
    MISSING_PARAMETER = "missing_parameter", 400, "A required query parameter is missing; extra names it."
    SERVER_ERROR = "server_error", 500, "An unexpected error (a bug); it has been logged."
    # --- Django REST framework's own refusals ----------------------------------------------------
    API_ERROR = "api_error", None, "Any other DRF exception, sent with that exception's status."
    AUTHENTICATION_FAILED = "authentication_failed", 401, "The credentials (token or session) are not valid."
    NOT_AUTHENTICATED = "not_authenticated", 401, "The request carries no credentials."
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "The endpoint does not accept this HTTP method."
    NOT_ACCEPTABLE = "not_acceptable", 406, "No representation matches the Accept header."
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "The endpoint does not accept this Content-Type."
    RATE_LIMITED = "rate_limited", 429, "Too many requests (or failed sign-ins); wait and retry."
    # --- Request hardening (core.middleware) ----------------------------------------------------
    MALFORMED_REQUEST_BODY = "malformed_request_body", 400, "The body cannot be parsed (bad JSON, bad Content-Length)."
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "The body is larger than the limit; extra gives it."
    INVALID_UTF8 = "invalid_utf8", 400, "The JSON body is not valid UTF-8."
    JSON_TOO_DEEP = "json_too_deep", 400, "The JSON body nests deeper than MAX_JSON_DEPTH."
    INVALID_UNICODE_ESCAPE = "invalid_unicode_escape", 400, "The JSON body escapes a NUL or a lone surrogate."
    INVALID_CHARACTERS = "invalid_characters", 400, "The URL contains a NUL character."
    DATABASE_UNAVAILABLE = "database_unavailable", 503, "The database cannot be reached; retry after Retry-After."
    # --- Idempotency (core.idempotency) ---------------------------------------------------------
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid", 400, "The Idempotency-Key is not 1-200 printable ASCII characters."
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight", 409, "A request with this Idempotency-Key is still running."
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 409, "This Idempotency-Key was used for a different request."
    # --- Audit: ledger, proofs, signing keys ----------------------------------------------------
    LEDGER_ACTOR_MISSING = "ledger_actor_missing", 400, "A recorded change has no actor (no signed-in user or named task)."
    LEDGER_ENTRY_NOT_FOUND = "ledger_entry_not_found", 404, "No ledger entry with this seq."
    GOVERNED_BULK_CONFLICTS_UNSUPPORTED = ("governed_bulk_conflicts_unsupported", 400,
                                           "bulk_create with ignore/update_conflicts on a governed model.")
    GOVERNED_BULK_CREATE_NO_PK = "governed_bulk_create_no_pk", 400, "The database did not return the keys of bulk-created rows."
    INVALID_TREE_SIZES = "invalid_tree_sizes", 400, "A consistency proof needs 1 <= first <= second."
    LEAF_INDEX_OUT_OF_RANGE = "leaf_index_out_of_range", 400, "The entry is not in a tree of the given size."
    TREE_SIZE_TOO_LARGE = "tree_size_too_large", 400, "The tree size exceeds the ledger's size."
    TREE_SIZE_UNKNOWN = "tree_size_unknown", 404, "The ledger has no tree of this size."
    NO_CHECKPOINT = "no_checkpoint", 404, "No checkpoint has been signed yet."
    SIGNING_KEY_EXISTS = "signing_key_exists", 409, "A signing key file exists already; rotate instead."
    SIGNING_KEY_INVALID = "signing_key_invalid", 503, "The signing key file does not hold an Ed25519 key."
    SIGNING_KEY_MISSING = "signing_key_missing", 503, "There is no signing key file."
    SIGNING_KEY_NOT_FOUND = "signing_key_not_found", 404, "No signing key with this key id."
    SIGNING_KEY_RETIRED = "signing_key_retired", 503, "The key in the signing key file has been retired."
    TSA_NOT_CONFIGURED = "tsa_not_configured", 503, "TSA_URL is set but TSA_CA_FILE holds no CA certificate."
    TSA_UNAVAILABLE = "tsa_unavailable", 503, "The RFC 3161 time-stamp authority did not answer, or not with HTTP 200."
    TSA_RESPONSE_INVALID = "tsa_response_invalid", 503, "The time-stamp authority refused, or its token does not verify."
    TOKEN_MODEL_RESTRICTED = ("token_model_restricted", 403,
                              "The service token is restricted to some models; it acts only on them and their teams.")
    # --- Lineage: datasets, runs, graph, pipeline keys, attestations, OpenLineage ----------------
    DATASET_NOT_FOUND = "dataset_not_found", 404, "No such dataset."
    DATASET_VERSION_NOT_FOUND = "dataset_version_not_found", 404, "No such dataset version (by id or digest)."
    TRAINING_RUN_NOT_FOUND = "training_run_not_found", 404, "No such training run."
    LINEAGE_NODE_NOT_FOUND = "lineage_node_not_found", 404, "No such lineage node."
    DIGEST_MISSING = "digest_missing", 400, "A dataset version needs a digest, its bytes or a folder manifest."
    DIGEST_MISMATCH = "digest_mismatch", 400, "The digest does not match the bytes or manifest given."
    INVALID_DIGEST = "invalid_digest", 400, "A digest is not a lowercase hex SHA-256."
    INVALID_MANIFEST = "invalid_manifest", 400, "A folder manifest is not a mapping of relative paths to SHA-256."
    INVALID_SCHEMA = "invalid_schema", 400, "A schema column has no name."
    INVALID_TIME_RANGE = "invalid_time_range", 400, "A time range ends before it starts."
    LINEAGE_CYCLE = "lineage_cycle", 409, "The link would make the lineage graph cyclic."
    LINEAGE_LINK_NOT_ALLOWED = "lineage_link_not_allowed", 400, "These two kinds of lineage node cannot be linked."
    LINEAGE_NODE_DIGEST_CONFLICT = "lineage_node_digest_conflict", 409, "The object is already registered with another digest."
    PIPELINE_KEY_INVALID = "pipeline_key_invalid", 400, "The public key cannot be read."
    PIPELINE_KEY_UNSUPPORTED = "pipeline_key_unsupported", 400, "The public key is not Ed25519."
    PIPELINE_KEY_EXISTS = "pipeline_key_exists", 409, "This public key is registered already."
    PIPELINE_KEY_ALREADY_REVOKED = "pipeline_key_already_revoked", 409, "The pipeline key is revoked already."
    PIPELINE_KEY_NOT_FOUND = "pipeline_key_not_found", 404, "No such pipeline key."
    ATTESTATION_NOT_FOUND = "attestation_not_found", 404, "No such attestation."
    ATTESTATION_MALFORMED = "attestation_malformed", 400, "The DSSE envelope or its in-toto Statement is malformed."
    ATTESTATION_PAYLOAD_TYPE_UNSUPPORTED = ("attestation_payload_type_unsupported", 400,
                                            "The envelope's payloadType is not in-toto.")
    ATTESTATION_KEY_UNKNOWN = "attestation_key_unknown", 400, "No signature is by a key registered to the caller."
    ATTESTATION_KEY_REVOKED = "attestation_key_revoked", 400, "The signing pipeline key has been revoked."
    ATTESTATION_SIGNATURE_INVALID = "attestation_signature_invalid", 400, "A signature does not verify."
    OPENLINEAGE_INVALID_EVENT = "openlineage_invalid_event", 400, "The OpenLineage event is not valid; the message says why."
    LINEAGE_TEAM_REQUIRED = "lineage_team_required", 403, "Lineage records belong to a team; the caller records for none."
    LINEAGE_OWNER_AMBIGUOUS = ("lineage_owner_ambiguous", 400,
                               "The caller records lineage for several teams; owner_team must name one.")
    LINEAGE_NOT_OWNER = "lineage_not_owner", 403, "The lineage record belongs to a team the caller does not record for."
    ATTESTATION_SUBJECT_NOT_WRITABLE = ("attestation_subject_not_writable", 403,
                                        "A subject digest matches no record the submitter may write (whether or not "
                                        "it exists elsewhere); extra lists the digests.")
    ATTESTATION_SERVER_KEY = ("attestation_server_key", 403,
                              "The envelope is signed by one of the server's own keys; only the server signs with them.")
    OPENLINEAGE_RUN_CONFLICT = ("openlineage_run_conflict", 409,
                                "The runId belongs to a run of another job or another account; nothing was written.")
    OPENLINEAGE_RETRY = "openlineage_retry", 503, "A concurrent event for the same run was being written; retry."
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding", 415, "The Content-Encoding is neither gzip nor none."
    # --- Governance: teams, environments, models, versions, accounts ----------------------------
    TEAM_NAME_TAKEN = "team_name_taken", 409, "A team with this name exists."
    TEAM_NOT_FOUND = "team_not_found", 400, "The team named in the body does not exist."
    ENVIRONMENT_NAME_TAKEN = "environment_name_taken", 409, "An environment with this name exists."
    ENVIRONMENT_NOT_FOUND = "environment_not_found", 404, "No such environment."
    MODEL_NAME_TAKEN = "model_name_taken", 409, "A model with this name exists."
    MODEL_NOT_FOUND = "model_not_found", 404, "No such model, or one the caller may not see."
    MODEL_VERSION_NOT_FOUND = "model_version_not_found", 404, "No such model version."
    MODEL_VERSION_LABEL_TAKEN = "model_version_label_taken", 409, "The model has a version with this label."
    MODEL_VERSION_NOT_DRAFT = "model_version_not_draft", 409, "Only a draft version's model card can change."
    MODEL_VERSION_IN_USE = "model_version_in_use", 409, "The version is deployed; deploy another one first."
    MODEL_VERSION_INVALID_TRANSITION = "model_version_invalid_transition", 409, "The version cannot move to that status."
    MANIFEST_INVALID = "manifest_invalid", 400, "The artifact manifest is not a mapping of file paths to SHA-256."
    MANIFEST_DIGEST_MISMATCH = "manifest_digest_mismatch", 400, "The manifest digest is not the SHA-256 of its JCS bytes."
    INVALID_RISK_TIER = "invalid_risk_tier", 400, "Unknown risk tier."
    INVALID_ROLE = "invalid_role", 400, "Unknown role."
    INVALID_TOKEN_SCOPE = "invalid_token_scope", 400, "Unknown service token scope."
    REASON_REQUIRED = "reason_required", 400, ("The action needs a reason in its comment (reject, withdraw, roll back, "
                                               "deprecate, retire, revoke); extra names the action and the minimum.")
    ADMIN_CANNOT_ACT_AS_DATA_SCIENTIST = ("admin_cannot_act_as_data_scientist", 403,
                                          "Admins and superusers do not register, change, submit, withdraw, deploy "
                                          "or roll back models, in any team.")
    SERVICE_ACCOUNT_NAME_TAKEN = "service_account_name_taken", 409, "A service account with this name exists."
    USERNAME_MIXED_SCRIPT = "username_mixed_script", 400, "The username mixes scripts (e.g. a Cyrillic letter among Latin ones)."
    USERNAME_CONFUSABLE = ("username_confusable", 409,
                           "The username looks like an existing one (same Unicode TR39 confusable skeleton).")
    SERVICE_TOKEN_ALREADY_REVOKED = "service_token_already_revoked", 409, "The service token is revoked already."
    # --- Governance: privileges (accounts, grant requests, schedules) ---------------------------
    PRIVILEGE_SELF_CHANGE = ("privilege_self_change", 403,
                             "Nobody changes (requests, decides) their own groups, permissions, staff or superuser flags.")
    PRIVILEGE_REQUEST_REQUIRED = ("privilege_request_required", 403,
                                  "A decision role, approver scope or admin is granted only through a grant request "
                                  "another admin approved.")
    PRIVILEGE_SEPARATION_OF_DUTIES = ("privilege_separation_of_duties", 409,
                                      "The grant would give one person roles that exclude each other; extra names them.")
    PRIVILEGE_GRANT_INVALID = ("privilege_grant_invalid", 400,
                               "A grant request names one guarded role, risk tier, model or superuser, for an active person.")
    PRIVILEGE_GRANT_NOT_FOUND = "privilege_grant_not_found", 404, "No such privilege grant request."
    PRIVILEGE_GRANT_NOT_PENDING = "privilege_grant_not_pending", 409, "The grant request is not in the state this step needs."
    PRIVILEGE_GRANT_OWN_REQUEST = "privilege_grant_own_request", 403, "The requester of a grant does not decide it."
    PRIVILEGE_PASSWORD_RESET = ("privilege_password_reset", 403,
                                "Another person may not set the password of a decision-role holder, admin or superuser.")
    SUPERUSER_COMMAND_LINE_ONLY = ("superuser_command_line_only", 403,
                                   "Superusers are made (and unmade) only on the command line.")
    SCHEDULE_RISK_OFFICER_ONLY = ("schedule_risk_officer_only", 403,
                                  "Periodic tasks and their schedules are changed by risk officers only.")
    SCHEDULE_PROTECTED = ("schedule_protected", 409,
                          "The ledger checkpoint and verification tasks cannot be disabled, deleted or made rarer.")
    # --- Governance: approvals and deployments --------------------------------------------------
    APPROVAL_REQUEST_NOT_FOUND = "approval_request_not_found", 404, "No such approval request."
    APPROVAL_NOT_PENDING = "approval_not_pending", 409, "The approval request is no longer pending."
    APPROVAL_REAPPROVAL_NOT_WITHDRAWABLE = ("approval_reapproval_not_withdrawable", 409,
                                            "A re-approval opened by a monitoring alert is decided, never withdrawn.")
    APPROVAL_ALREADY_DECIDED = "approval_already_decided", 409, "The caller decided this request already; one person counts once."
    APPROVAL_EVIDENCE_MISSING = "approval_evidence_missing", 409, "The model card or the evidence the policy requires is missing."
    APPROVAL_POLICY_MISSING = "approval_policy_missing", 409, "No approval policy applies to the model."
    APPROVAL_PERMISSION_DENIED = "approval_permission_denied", 403, "The caller may not decide on this request."
    APPROVAL_SEPARATION_OF_DUTIES = "approval_separation_of_duties", 403, "Separation of duties forbids this caller."
    APPROVAL_EVIDENCE_SPEC_WEAKER = "approval_evidence_spec_weaker", 409, "Each audit spec is laxer than the policy."
    APPROVAL_EVIDENCE_SPEC_UNCONFIRMED = "approval_evidence_spec_unconfirmed", 409, "High risk: spec not confirmed by another."
    APPROVAL_EVIDENCE_AUDIT_FAILED = "approval_evidence_audit_failed", 409, "A conforming audit failed, not waived."
    # --- Governance: approvals signed by the approver (passkeys, DSSE) ---------------------------
    APPROVAL_SIGNATURE_REQUIRED = ("approval_signature_required", 409,
                                   "The policy requires a decision signed by the approver (extra: the method it accepts).")
    APPROVAL_SIGNATURE_METHOD = ("approval_signature_method", 409,
                                 "The decision is signed, but with a method the policy does not accept.")
    APPROVAL_SIGNATURE_INVALID = ("approval_signature_invalid", 400,
                                  "The signature, envelope or WebAuthn assertion does not verify with the credential.")
    APPROVAL_CREDENTIAL_UNKNOWN = ("approval_credential_unknown", 400,
                                   "The signing credential is not an active credential registered by the approver.")
    APPROVAL_CHALLENGE_UNKNOWN = ("approval_challenge_unknown", 400,
                                  "No challenge was issued to this approver for this statement and request.")
    APPROVAL_CHALLENGE_USED = "approval_challenge_used", 409, "The challenge (nonce) was used already: a replay."
    APPROVAL_CHALLENGE_EXPIRED = "approval_challenge_expired", 409, "The challenge expired; ask for a new one."
    APPROVAL_STATEMENT_MISMATCH = ("approval_statement_mismatch", 400,
                                   "The signed statement differs from the one issued, or from the decision sent "
                                   "(decision, comment, policy or version changed); extra names the field.")
    APPROVER_CREDENTIAL_INVALID = ("approver_credential_invalid", 400,
                                   "The credential cannot be registered: bad key, or the WebAuthn registration fails.")
    APPROVER_CREDENTIAL_EXISTS = "approver_credential_exists", 409, "This credential or key is registered already."
    APPROVER_CREDENTIAL_SELF_ONLY = ("approver_credential_self_only", 403,
                                     "A signing credential is registered (and revoked) only by the person it signs "
                                     "for; nobody, admins included, registers one for someone else.")
    APPROVER_CREDENTIAL_NOT_FOUND = "approver_credential_not_found", 404, "No such signing credential of yours."
    POLICY_BAD_METRIC_FLOORS = "policy_bad_metric_floors", 400, "Metric floors are not {metric: {min|max: 0..1}}."
    POLICY_OWNED_BY_RISK_OFFICERS = "policy_owned_by_risk_officers", 403, "Only risk officers set approval policies."
    POLICY_CHANGE_SAME_OFFICER = "policy_change_same_officer", 403, "A weakening needs a second risk officer."
    POLICY_CHANGE_NOT_FOUND = "policy_change_not_found", 404, "No such approval policy change."
    RISK_TIER_CHANGE_NOT_FOUND = "risk_tier_change_not_found", 404, "No such risk tier change."
    POLICY_CHANGE_NOT_PENDING = "policy_change_not_pending", 409, "The policy change is no longer pending."
    POLICY_CHANGE_STALE = "policy_change_stale", 409, "The policy changed since the weakening was asked."
    RISK_TIER_LOWERING_TWO_PERSON = "risk_tier_lowering_two_person", 403, "A risk officer asks, a second person confirms."
    RISK_TIER_CHANGE_SAME_PERSON = "risk_tier_change_same_person", 403, "Who asked to lower a tier cannot confirm it."
    RISK_TIER_CHANGE_NOT_PENDING = "risk_tier_change_not_pending", 409, "The tier change is not pending, or the tier changed."
    RISK_TIER_APPROVAL_PENDING = "risk_tier_approval_pending", 409, "No tier lowering while a request of the model is pending."
    RISK_TIER_NOT_LOWER = "risk_tier_not_lower", 400, "The requested tier is not lower than the current one."
    INVALID_DECISION = "invalid_decision", 400, "The decision is neither 'approve' nor 'reject'."
    DEPLOYMENT_NOT_FOUND = "deployment_not_found", 404, "No such deployment."
    DEPLOYMENT_NOT_APPROVED = "deployment_not_approved", 409, "Only an approved version deploys to production."
    DEPLOYMENT_VERSION_UNUSABLE = "deployment_version_unusable", 409, "The version's status does not allow deploying it."
    DEPLOYMENT_CONCURRENT = "deployment_concurrent", 409, "Another deployment to the environment happened at the same time."
    DEPLOYMENT_NOT_ACTIVE = "deployment_not_active", 409, "Only the active deployment can be rolled back or ended."
    DEPLOYMENT_NO_PREVIOUS = "deployment_no_previous", 409, "There is no earlier deployable version to roll back to."
    DEPLOYMENT_ROLLBACK_TARGET_PULLED = ("deployment_rollback_target_pulled", 409,
                                         "Every earlier version was pulled for cause or rejected; a rollback never "
                                         "redeploys one.")
    # --- Governance: fairness audits ------------------------------------------------------------
    FAIRNESS_AUDIT_NOT_FOUND = "fairness_audit_not_found", 404, "No such fairness audit run."
    FAIRNESS_SPEC_NOT_FOUND = "fairness_spec_not_found", 404, "No such fairness audit spec."
    FAIRNESS_SPEC_REQUIRED = "fairness_spec_required", 400, "No audit spec was chosen."
    FAIRNESS_AUDIT_BUSY = "fairness_audit_busy", 409, "Another live worker holds the audit run."
    FAIRNESS_SPEC_CONFIRM_DENIED = "fairness_spec_confirm_denied", 403, "Only another risk officer or approver confirms a spec."
    FAIRNESS_SPEC_ALREADY_CONFIRMED = "fairness_spec_already_confirmed", 409, "The spec is confirmed already."
    FAIRNESS_WAIVER_DENIED = "fairness_waiver_denied", 403, "Only a risk officer other than the submitter waives."
    FAIRNESS_WAIVER_NOT_APPLICABLE = "fairness_waiver_not_applicable", 409, "Only a completed failing version audit, once."
    FAIRNESS_UNAVAILABLE = "fairness_unavailable", 503, "Fairness audits are not available."
    FAIRNESS_UPLOAD_TOO_LARGE = "fairness_upload_too_large", 413, "The upload is larger than its limit."
    FAIRNESS_NO_FILE = "fairness_no_file", 400, "The multipart field 'file' is missing."
    FAIRNESS_NO_DATASET = "fairness_no_dataset", 400, "The spec has no evaluation data."
    FAIRNESS_NO_BATCHES = "fairness_no_batches", 400, "The model has no prediction batches in the window."
    FAIRNESS_NO_PRODUCTION_DEPLOYMENT = "fairness_no_production_deployment", 409, "The model is not deployed in production."
    FAIRNESS_DATASET_MISMATCH = "fairness_dataset_mismatch", 400, "The evaluation data is not the lineage version it names."
    FAIRNESS_DATASET_NOT_OWNED = ("fairness_dataset_not_owned", 403,
                                  "Only a dataset's owners (its registering account and that account's teams) name it "
                                  "in an audit spec.")
    FAIRNESS_DATASET_UNVERIFIABLE = ("fairness_dataset_unverifiable", 400,
                                     "The dataset version's digest does not cover its content (an OpenLineage "
                                     "identity), so no file can be checked against it.")
    FAIRNESS_BAD_ARGUMENTS = "fairness_bad_arguments", 400, "An audit argument is out of range or of the wrong type."
    FAIRNESS_BAD_METRICS = "fairness_bad_metrics", 400, "Unknown metric names."
    FAIRNESS_BAD_THRESHOLDS = "fairness_bad_thresholds", 400, "Thresholds are not an object of known metric -> number."
    FAIRNESS_BAD_SCHEDULE = "fairness_bad_schedule", 400, "The audit schedule (periodic task) is not valid."
    FAIRNESS_BAD_LABEL = "fairness_bad_label", 400, "A label is outside the declared label set."
    FAIRNESS_BAD_SCORE = "fairness_bad_score", 400, "A score is missing or not numeric."
    FAIRNESS_BAD_REFERENCE_GROUP = "fairness_bad_reference_group", 400, "The reference group is not in the data."
    FAIRNESS_POS_LABEL_REQUIRED = "fairness_pos_label_required", 400, "The labels are not 0/1 or -1/1, so pos_label is required."
    FAIRNESS_MISSING_COLUMN = "fairness_missing_column", 400, "A required column is missing from the data."
    FAIRNESS_LENGTH_MISMATCH = "fairness_length_mismatch", 400, "The columns have different lengths."
    FAIRNESS_EMPTY_INPUT = "fairness_empty_input", 400, "There are no data rows to audit."
    FAIRNESS_MALFORMED_FILE = "fairness_malformed_file", 400, "The file is not a readable CSV or Parquet file."
    FAIRNESS_FILE_NOT_FOUND = "fairness_file_not_found", 400, "The data file is missing."
    FAIRNESS_INPUT_CHANGED = "fairness_input_changed", 400, "The data file changed while it was audited."
    FAIRNESS_TIME_LIMIT = "fairness_time_limit", None, "Recorded on a failed audit run: it exceeded its time limit."
    FAIRNESS_INTERNAL_ERROR = "fairness_internal_error", None, "Recorded on a failed audit run: an unexpected error."
    # sensitive data at rest (governance/fairness/services/vault.py)
    DATA_ERASED = "data_erased", 410, "The data was erased (retention ended or an erasure request); its digests remain."
    SEALED_FILE_CORRUPT = ("sealed_file_corrupt", 409,
                           "A stored data file fails authentication (altered or truncated) or its key does not unwrap.")
    DATA_KEK_FROM_ENVIRONMENT = "data_kek_from_environment", 400, "DATA_KEK is set, so the keyring file is not rotated."
    DATA_BAD_ERASURE = "data_bad_erasure", 400, "The erasure request names an unknown reason or column."
    DATA_ERASURE_NO_ROWS = "data_erasure_no_rows", 400, "No row of the file holds the value to erase."
    DATA_BAD_RETENTION = "data_bad_retention", 400, "A retention change needs a reason and a date."
    DATA_ERASED_ALREADY = "data_erased_already", 409, "The data is erased already."
    DATA_OFFICER_REQUIRED = ("data_officer_required", 403,
                             "Only a risk officer who can see the model (or a system job) sets retention or erases data.")
    DATA_DOWNLOAD_NOT_ALLOWED = ("data_download_not_allowed", 403,
                                 "Downloading a data file needs a purpose: an auditor, a risk officer or the spec's owner.")
    SEALED_FILE_NOT_FOUND = "sealed_file_not_found", 404, "No such data file (or not visible to the caller)."
    # monitoring: reference profiles and drift input (the drift engine's DriftInputError codes)
    MONITORING_PROFILE_FROZEN = "monitoring_profile_frozen", 409, "The version is approved: its reference profile is frozen."
    MONITORING_PROFILE_NOT_FOUND = "monitoring_profile_not_found", 404, "No such reference profile."
    MONITORING_BAD_THRESHOLDS = "monitoring_bad_thresholds", 400, "Monitor thresholds are not known names -> numbers."
    MONITORING_THRESHOLDS_RISK_OFFICER_ONLY = ("monitoring_thresholds_risk_officer_only", 403,
                                               "Only risk officers set monitoring thresholds.")
    MONITORING_SECOND_RISK_OFFICER = "monitoring_second_risk_officer", 403, "Weakening thresholds takes a second risk officer."
    MONITORING_CHANGE_PENDING = "monitoring_change_pending", 409, "A threshold weakening already waits, or was already applied."
    MONITORING_ALERT_CLOSED = "monitoring_alert_closed", 409, "The alert was already acknowledged."
    MONITORING_ALERT_BLOCKS_PROMOTION = ("monitoring_alert_blocks_promotion", 409,
                                         "An open monitoring alert of the version blocks its promotion to production.")
    MONITORING_MONITOR_NOT_FOUND = "monitoring_monitor_not_found", 404, "No such monitor."
    MONITORING_ALERT_NOT_FOUND = "monitoring_alert_not_found", 404, "No such alert."
    MONITORING_COMPARISON_NOT_FOUND = "monitoring_comparison_not_found", 404, "No such champion/challenger comparison."
    MONITORING_VERSION_NOT_APPROVED = "monitoring_version_not_approved", 409, "The version has not been approved."
    MONITORING_PROFILE_CORRUPT = "monitoring_profile_corrupt", 409, "The stored profile body does not match its recorded digest."
    MONITORING_NO_DATA = "monitoring_no_data", 400, "Give the reference data: a file or a lineage dataset version."
    MONITORING_BAD_ARGUMENTS = "monitoring_bad_arguments", 400, "A monitoring argument is out of range or of the wrong type."
    MONITORING_DUPLICATE_PREDICTION_ID = ("monitoring_duplicate_prediction_id", 400,
                                          "A prediction id appears twice (in the outcomes or in the batch).")
    MONITORING_UNKNOWN_PREDICTION_ID = ("monitoring_unknown_prediction_id", 400,
                                        "An outcome names a prediction id the batch lacks.")
    MONITORING_NO_PREDICTION_ID = "monitoring_no_prediction_id", 400, "The batch has no (complete) prediction id column."
    MONITORING_OUTCOME_EXISTS = "monitoring_outcome_exists", 409, "A prediction already has its late outcome."
    MONITORING_RUN_RESTATED = "monitoring_run_restated", 409, "The run was already restated (or its batches erased)."
    MONITORING_BATCH_NOT_FOUND = "monitoring_batch_not_found", 404, "No such prediction batch."
    MONITORING_NOT_COMPARABLE = ("monitoring_not_comparable", 400,
                                 "Champion and challenger must be two versions of one model scored on the same rows.")
    DRIFT_BAD_ARGUMENTS = "drift_bad_arguments", 400, "A drift argument (bins, alpha, correction) is out of range."
    DRIFT_NOT_NUMERIC = "drift_not_numeric", 400, "A numeric column holds a value that is not a finite number."
    DRIFT_EMPTY_COLUMN = "drift_empty_column", 400, "A column has no values to compare."
    DRIFT_MISSING_COLUMN = "drift_missing_column", 400, "A named column is not in the data."
    DRIFT_EMPTY_INPUT = "drift_empty_input", 400, "The data file has no rows."
    DRIFT_MALFORMED_FILE = "drift_malformed_file", 400, "The file is not a readable CSV or Parquet file."
    DRIFT_FILE_NOT_FOUND = "drift_file_not_found", 400, "The data file is missing."
    PERFORMANCE_LENGTH_MISMATCH = "performance_length_mismatch", 400, "Outcomes and predictions differ in length."
    PERFORMANCE_EMPTY = "performance_empty", 400, "No labelled predictions in the window."
    PERFORMANCE_MISSING_VALUES = "performance_missing_values", 400, "An outcome or prediction is missing."
    PERFORMANCE_NOT_BINARY = "performance_not_binary", 400, "Classification labels must be 0 or 1."
    PERFORMANCE_BAD_SCORE = "performance_bad_score", 400, "Scores must be probabilities in [0, 1]."
    # --- Governance: reports and bundles --------------------------------------------------------
    BUNDLE_EXPORT_NOT_FOUND = "bundle_export_not_found", 404, "No such bundle export."
    BUNDLE_EXPORT_FORBIDDEN = "bundle_export_forbidden", 403, "Exporting bundles needs the auditor role."
    BUNDLE_NOT_READY = "bundle_not_ready", 409, "The bundle is not built yet."
    BUNDLE_NO_SUBJECTS = "bundle_no_subjects", 400, "A bundle needs at least one subject."
    BUNDLE_TOO_MANY_SUBJECTS = "bundle_too_many_subjects", 400, "A bundle has more subjects than allowed."
    BUNDLE_BAD_SUBJECT = "bundle_bad_subject", 400, "A bundle subject's type or id is empty or too long."
    REPORT_SCHEDULE_BAD_CADENCE = "report_schedule_bad_cadence", 400, "Unknown report schedule cadence."
    # --- MLflow integration (governance/integrations/mlflow) ------------------------------------
    MLFLOW_WEBHOOK_SIGNATURE_INVALID = ("mlflow_webhook_signature_invalid", 401,
                                        "The MLflow webhook's signature headers are missing or match no connection's secret.")
    MLFLOW_WEBHOOK_STALE = "mlflow_webhook_stale", 401, "X-MLflow-Timestamp is further from now than MLFLOW_WEBHOOK_MAX_AGE_S."
    MLFLOW_WEBHOOK_MALFORMED = "mlflow_webhook_malformed", 400, "The signed webhook body is not an MLflow event."
    MLFLOW_UNAVAILABLE = "mlflow_unavailable", 503, "The MLflow tracking server could not be reached or refused the call."
    MLFLOW_MODEL_NAME_TAKEN = "mlflow_model_name_taken", 409, "Another team's registered model has the MLflow model's name."
    MLFLOW_MODEL_NAME_INVALID = "mlflow_model_name_invalid", 400, "The MLflow model's name maps to no valid model name here."
    MLFLOW_ARTIFACTS_UNHASHABLE = ("mlflow_artifacts_unhashable", 409,
                                   "The version's artifacts cannot be listed and hashed through MLflow's artifact proxy.")
    MLFLOW_CONNECTION_INVALID = "mlflow_connection_invalid", 400, "A connection field is not valid; extra names it."
    MLFLOW_CONNECTION_NOT_FOUND = "mlflow_connection_not_found", 404, "No such MLflow connection."


def registered(code: str) -> str:
    """`code` itself, if `ErrorCode` lists it; refuses any other code."""
    try:
        return ErrorCode(code).value
    except ValueError:
        raise ValueError(f"Unregistered error code {code!r}: add it to core.errors.ErrorCode.") from None


class ServiceError(Exception):
    """A refused operation: a stable `code`, an HTTP status, a message for humans, and details."""

    code = "service_error"
    status_code = status.HTTP_400_BAD_REQUEST

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registered(cls.code)  # a subclass's own code must be registered too (checked at import)

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = registered(code)
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}


class InvalidInput(ServiceError):
    code = "invalid_input"


class NotFound(ServiceError):
    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(ServiceError):
    code = "permission_denied"
    status_code = status.HTTP_403_FORBIDDEN


class Conflict(ServiceError):
    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


class Unavailable(ServiceError):
    code = "service_unavailable"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


# Called with every ServiceError that reaches a surface (the API handler, the admin, the pages),
# after the refused work's transaction has rolled back. The audit app registers the hook that
# keeps refusals worth recording in the ledger (audit/refusals.py); core cannot import it.
SURFACED_HOOKS: list[Callable[[ServiceError], None]] = []


def surfaced(exc: ServiceError) -> ServiceError:
    """Tell the registered hooks that `exc` reached a surface; return it."""
    for hook in SURFACED_HOOKS:
        hook(exc)
    return exc


def error_text(exc: ServiceError) -> str:
    """How the admin and the pages show a refusal: the message and its stable code."""
    surfaced(exc)
    return f"{exc.message} [{exc.code}]"


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": registered(code), "message": message, "extra": extra or {}}


_DRF_CODES: dict[type[Exception], str] = {
    drf_exceptions.ParseError: "malformed_request_body",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.ValidationError: "invalid_input",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in an API view as the one error format."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        surfaced(exc)
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_denied", "You may not do this."), status=403)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return Response(error_body("database_unavailable", "The database is unavailable; retry later."),
                        status=503, headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseError):
        return None  # an integrity bug; let it surface as a 500 and in the logs
    if isinstance(exc, drf_exceptions.APIException):
        code = "api_error"
        for klass, name in _DRF_CODES.items():
            if isinstance(exc, klass):
                code = name
                break
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        if isinstance(exc, drf_exceptions.ValidationError):
            return Response(error_body(code, "The request is not valid.", {"fields": exc.detail}),
                            status=exc.status_code, headers=headers)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Response(error_body(code, detail), status=exc.status_code, headers=headers)
    return None


def json_error(code: str, message: str, status_code: int, extra: dict[str, Any] | None = None) -> JsonResponse:
    """The same error format for plain Django views (handlers for 404/500, middleware)."""
    return JsonResponse(error_body(code, message, extra), status=status_code)
