"""Settings for the governance service.

Every value comes from the environment and is read here, in this one module. `.env.example`
lists each variable with a default that works for the embedded setup (SQLite and a
file-system task queue, no servers).
"""

from __future__ import annotations

import functools
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.utils.functional import lazy

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in _env(name, default).split(",") if item.strip()]


def _load_dotenv(path: Path) -> None:
    """Fill os.environ from a local `.env` file without overriding the real environment."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip('"').strip("'"))


_load_dotenv(BASE_DIR / ".env")

def served_base_url(host: str, port: str) -> str:
    """The http:// address a server bound to `host`:`port` answers on; a wildcard bind answers on loopback."""
    host = host.strip() or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)  # noqa: S104 (a bind, not a link)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL
    return f"http://{host}:{port.strip() or '8000'}"


def _path(name: str, default: str) -> Path:
    """A path setting; relative paths are relative to the project folder, not the cwd."""
    return BASE_DIR / _env(name, default)


VAR_DIR = _path("VAR_DIR", "var")

DEBUG = _env_bool("DEBUG", False)
# The embedded setup creates a random key file on first use; production sets SECRET_KEY.
SECRET_KEY_FILE = _path("SECRET_KEY_FILE", str(VAR_DIR / "secret_key"))


@functools.cache  # lazy() calls it on every use; read the file once per process
def _secret_key_from_file() -> str:
    """The embedded key: created (0600, random) the first time something signs, never at import."""
    import secrets

    SECRET_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    if not SECRET_KEY_FILE.exists():
        try:
            fd = os.open(SECRET_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64))
    return SECRET_KEY_FILE.read_text().strip()


# Importing the settings writes nothing: the embedded key file is read (or created) lazily.
SECRET_KEY = os.environ.get("SECRET_KEY") or lazy(_secret_key_from_file, str)()
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")
# Where `make run` (bin/run-all) binds the web server; the defaults of the site's own addresses follow it.
SERVE_HOST = _env("HOST", "127.0.0.1")
SERVE_PORT = _env("PORT", "8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "django_celery_beat",
    "axes",  # sign-in: failed attempts counted in the shared database (governance.signin)
    "core",  # the shared kernel: errors, API plumbing, hardening, idempotency, outbox
    "audit",
    "lineage",
    "governance",
    "governance.fairness",
    "governance.monitoring",
    "governance.reports",
    "governance.pages",  # pages: dashboard, models, ledger explorer
    "governance.signatures",  # approvals signed by the approver: passkeys and DSSE keys
    "core.outbox",  # faults area: transactional outbox for Celery tasks (label "outbox")
    "governance.integrations.mlflow",  # mlflow: governed MLflow registries (label "mlflow_integration")
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # hardening (faults/security area): body size, UTF-8, JSON depth; lost database -> 503
    "core.middleware.RequestHardeningMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # governed models (audit area): the signed-in user is the actor of every captured write
    "core.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # sign-in: answers a refused sign-in with governance.signin.lockout_response (429, Retry-After)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "governance.urls"
WSGI_APPLICATION = "governance.wsgi.application"
ASGI_APPLICATION = "governance.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# An empty DATABASE_URL means the embedded default, as an unset one does.
DATABASE_URL = _env("DATABASE_URL", "") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(_env("DB_CONN_MAX_AGE", "0")))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Its folder is created when the app starts (core.apps), not when the settings are imported.
    DATABASES["default"]["NAME"] = str(BASE_DIR / DATABASES["default"]["NAME"])
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two ledger writers queue instead of
        # both reading the same chain head; WAL lets readers go on meanwhile.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a cooling-off sign-in before any password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ANONYMOUS_USER_NAME = None  # guardian: anonymous users get no object permissions at all
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Security -------------------------------------------------------------------------------
SECURE_HSTS_SECONDS = int(_env("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = _env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(_env("SESSION_COOKIE_AGE_S", str(8 * 3600)))
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = int(_env("MAX_REQUEST_BODY_BYTES", str(10 * 1024 * 1024)))
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Larger uploads are spooled to disk sealed under a key held only in memory, never in clear (core/uploads.py).
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler", "core.uploads.SealingUploadHandler"]
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
MAX_UPLOAD_BYTES = int(_env("MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)))

# --- Internationalisation, static and media -------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = _path("MEDIA_ROOT", str(VAR_DIR / "media"))
MEDIA_URL = "/media/"

# --- Ledger ---------------------------------------------------------------------------------
LEDGER_ORIGIN = _env("LEDGER_ORIGIN", "governance.example.org/ledger")
LEDGER_SIGNING_KEY_FILE = _path("LEDGER_SIGNING_KEY_FILE", str(VAR_DIR / "keys" / "ledger.key"))
ATTESTATION_SIGNING_KEY_FILE = _path("ATTESTATION_SIGNING_KEY_FILE", str(VAR_DIR / "keys" / "attestation.key"))
LEDGER_CHECKPOINT_INTERVAL_S = int(_env("LEDGER_CHECKPOINT_INTERVAL_S", "300"))
LEDGER_VERIFY_HOUR_UTC = int(_env("LEDGER_VERIFY_HOUR_UTC", "2"))
# Witnesses (C2SP tlog-witness): a C2SP tlog-policy file naming them (empty: no witnesses), the
# HTTP timeout, who gets refusal and fork alarms, and the hour (UTC) unchanged checkpoints are re-pushed.
WITNESS_POLICY_FILE = _env("WITNESS_POLICY_FILE", "")
WITNESS_TIMEOUT_S = float(_env("WITNESS_TIMEOUT_S", "10"))
WITNESS_ALERT_EMAILS = _env_list("WITNESS_ALERT_EMAILS", "")
WITNESS_REPUSH_HOUR_UTC = int(_env("WITNESS_REPUSH_HOUR_UTC", "3"))
# RFC 3161: with a TSA URL and its CA certificate (PEM), every exported checkpoint and at least one
# checkpoint a day get a time-stamp token (audit.tsa). Empty TSA_URL: no timestamps.
TSA_URL = _env("TSA_URL", "")
TSA_CA_FILE = _env("TSA_CA_FILE", "")
TSA_TIMEOUT_S = float(_env("TSA_TIMEOUT_S", "10"))
TSA_DAILY_HOUR_UTC = int(_env("TSA_DAILY_HOUR_UTC", "3"))

# --- Approvals signed by the approver (governance.signatures) ---------------------------------
# The WebAuthn relying party: the host name passkeys are bound to, and the exact origin of the pages.
WEBAUTHN_RP_ID = _env("WEBAUTHN_RP_ID", "localhost")
WEBAUTHN_RP_NAME = _env("WEBAUTHN_RP_NAME", "Model governance")
# Unset or empty: http://<WEBAUTHN_RP_ID>:<PORT>, the pages as `make run` serves them.
WEBAUTHN_ORIGIN = _env("WEBAUTHN_ORIGIN", "") or served_base_url(WEBAUTHN_RP_ID, SERVE_PORT)
APPROVAL_CHALLENGE_TTL_S = int(_env("APPROVAL_CHALLENGE_TTL_S", "600"))

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.auth.ServiceTokenAuthentication",  # governance: pipeline tokens (Bearer)
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.api.CursorlessPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min"},
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ML governance and audit-trail API",
    "DESCRIPTION": "Append-only, signed ledger of model changes, approvals, lineage and audits.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = _env("REDIS_URL", "")
_FS_QUEUE_DIR = VAR_DIR / "queue"
CELERY_BROKER_URL = _env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The folders are created when the Celery app is configured (governance/celery.py), not here.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_FS_QUEUE_DIR),
        "data_folder_out": str(_FS_QUEUE_DIR),
        "processed_folder": str(_FS_QUEUE_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(_FS_QUEUE_DIR / "control"),  # broadcast/pidbox files, not in the cwd
    }
else:
    # Tasks are acked late: Redis redelivers a task whose worker died unacknowledged after this
    # long, so it must exceed the longest task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(_env("CELERY_VISIBILITY_TIMEOUT_S", "3600"))}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(_env("CELERY_TASK_TIME_LIMIT_S", "1800"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Email and webhooks ---------------------------------------------------------------------
EMAIL_BACKEND = _env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = _env("DEFAULT_FROM_EMAIL", "governance@localhost")

# --- Logging: never log request bodies or secrets -------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},  # one line per failed sign-in (username masked), not four
}

# --- Sign-in: django-axes with governance.signin's limits and backoff ----------------------------
# Failures are counted in the database (shared by every gunicorn worker), per username at one
# address, per address across usernames and per username across addresses (each address counting
# at most SIGN_IN_FAILURES_PER_USER_ADDRESS, so one address never locks a user out elsewhere).
# Reaching a limit refuses that scope for SIGN_IN_COOLOFF_S, doubled by every further failure
# (up to SIGN_IN_COOLOFF_MAX_S); then the genuine password works again.
SIGN_IN_FAILURES_PER_USER_ADDRESS = int(_env("SIGN_IN_FAILURES_PER_USER_ADDRESS", "5"))
SIGN_IN_FAILURES_PER_ADDRESS = int(_env("SIGN_IN_FAILURES_PER_ADDRESS", "20"))
SIGN_IN_FAILURES_PER_USER = int(_env("SIGN_IN_FAILURES_PER_USER", "30"))
SIGN_IN_COOLOFF_S = int(_env("SIGN_IN_COOLOFF_S", "300"))
SIGN_IN_COOLOFF_MAX_S = int(_env("SIGN_IN_COOLOFF_MAX_S", "86400"))
# Failed sign-ins reach the ledger once per username and window, with their count (governance.signin).
SIGN_IN_FAILURE_WINDOW_S = int(_env("SIGN_IN_FAILURE_WINDOW_S", "3600"))
AXES_HANDLER = "governance.signin.SignInHandler"
AXES_FAILURE_LIMIT = SIGN_IN_FAILURES_PER_USER_ADDRESS
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address", "username"]
AXES_COOLOFF_TIME = timedelta(seconds=SIGN_IN_COOLOFF_S)
AXES_USE_ATTEMPT_EXPIRATION = True  # each counted attempt expires on its own (the backoff lengthens it)
AXES_RESET_ON_SUCCESS = True  # the handler forgets only that username's failures at that address
AXES_LOCKOUT_CALLABLE = "governance.signin.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are ledger entries (auth.signed_in)
AXES_VERBOSE = False
AXES_ENABLE_ADMIN = False  # its admin would delete counts unrecorded; `manage.py axes_reset_*` is the operator's tool
# The client address is REMOTE_ADDR; behind the TLS proxy, the address that proxy saw.
AXES_IPWARE_META_PRECEDENCE_ORDER = (["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if _env_bool("BEHIND_TLS_PROXY", False)
                                     else ["REMOTE_ADDR"])
AXES_IPWARE_PROXY_COUNT = 1 if _env_bool("BEHIND_TLS_PROXY", False) else None

# --- Governance: approvals ---------------------------------------------------------------------
APPROVAL_EXPIRY_CHECK_INTERVAL_S = int(_env("APPROVAL_EXPIRY_CHECK_INTERVAL_S", "300"))
IDEMPOTENCY_RETENTION_HOURS = int(_env("IDEMPOTENCY_RETENTION_HOURS", "24"))
# Where core.idempotency stores the responses it replays (the model and its table stay in governance).
IDEMPOTENCY_RECORD_MODEL = "governance.IdempotencyRecord"

# --- Lineage: OpenLineage ingestion ----------------------------------------------------------
# Largest OpenLineage event accepted, after gzip decompression (bigger bodies get 413).
OPENLINEAGE_MAX_EVENT_BYTES = int(_env("OPENLINEAGE_MAX_EVENT_BYTES", str(8 * 1024 * 1024)))

# --- Hardening (faults/security area): request limits ------------------------------------------
# JSON bodies nesting deeper than this are refused with 400 json_too_deep (Python's json recurses).
MAX_JSON_DEPTH = int(_env("MAX_JSON_DEPTH", "64"))
# Path ids are bounded to 18 digits (lineage's `rowid` converter); the schema says integer.
SPECTACULAR_SETTINGS["PATH_CONVERTER_OVERRIDES"] = {"rowid": {"type": "integer", "minimum": 0,
                                                             "maximum": 999_999_999_999_999_999}}
# Outbox: tasks requested while the broker was down are published by this beat job (and at worker start).
OUTBOX_DISPATCH_INTERVAL_S = int(_env("OUTBOX_DISPATCH_INTERVAL_S", "30"))
# After a commit, `background` hands the new message to a publisher thread of the process, so the
# request does not wait on the broker; `inline` publishes before the response (the tests' choice).
OUTBOX_PUBLISH = _env("OUTBOX_PUBLISH", "background")

# --- Monitoring: GET /metrics (Prometheus) ----------------------------------------------------
# Denied unless one of these is set: a bearer token the scraper sends, or networks (CIDR) it scrapes from.
METRICS_BEARER_TOKEN = _env("METRICS_BEARER_TOKEN", "")
METRICS_ALLOWED_NETWORKS = _env_list("METRICS_ALLOWED_NETWORKS", "")
# How often beat looks for monitors whose current slot (every run_every_hours) has no run yet.
MONITORING_DUE_INTERVAL_S = int(_env("MONITORING_DUE_INTERVAL_S", "300"))
# A run that raises alerts: e-mail to the model's contacts plus these, and a webhook signed like the
# fairness one (HMAC-SHA256 of "<delivery id>.<timestamp>.<body>"); its body is the service's own
# JSON ("governance") or a Slack-compatible {"text": ..., "blocks": [...]} ("slack").
MONITORING_NOTIFY_EMAILS = _env_list("MONITORING_NOTIFY_EMAILS", "")
MONITORING_WEBHOOK_URL = _env("MONITORING_WEBHOOK_URL", "")
MONITORING_WEBHOOK_SECRET = _env("MONITORING_WEBHOOK_SECRET", "")
MONITORING_WEBHOOK_FORMAT = _env("MONITORING_WEBHOOK_FORMAT", "governance")  # anything but "slack": governance

# --- Fairness audits (fairness area) ---------------------------------------------------------
# Largest prediction batch (API upload) and evaluation dataset accepted; bigger uploads get 413.
FAIRNESS_MAX_UPLOAD_BYTES = int(_env("FAIRNESS_MAX_UPLOAD_BYTES", str(200 * 1024 * 1024)))
FAIRNESS_MAX_DATASET_BYTES = int(_env("FAIRNESS_MAX_DATASET_BYTES", str(2 * 1024 * 1024 * 1024)))
FAIRNESS_MAX_BOOTSTRAP = int(_env("FAIRNESS_MAX_BOOTSTRAP", "100000"))
FAIRNESS_CHUNK_ROWS = int(_env("FAIRNESS_CHUNK_ROWS", "1000000"))
# A spec naming a lineage dataset version whose location is a file under this folder reads it (empty: never).
FAIRNESS_LOCAL_DATASET_ROOT = _env("FAIRNESS_LOCAL_DATASET_ROOT", "")
# Test hook only: seconds to sleep after each chunk, so an integration test can interrupt an audit.
FAIRNESS_CHUNK_DELAY_S = float(_env("FAIRNESS_CHUNK_DELAY_S", "0"))
# A running audit whose heartbeat is older than this is taken over by another worker.
FAIRNESS_RUN_LEASE_S = int(_env("FAIRNESS_RUN_LEASE_S", "120"))
FAIRNESS_REQUEUE_AFTER_S = int(_env("FAIRNESS_REQUEUE_AFTER_S", "900"))
FAIRNESS_TASK_TIME_LIMIT_S = int(_env("FAIRNESS_TASK_TIME_LIMIT_S", "3600"))
# Failing audits: e-mail to the model's contacts plus these, and a webhook signed with HMAC-SHA256.
FAIRNESS_NOTIFY_EMAILS = [a.strip() for a in _env("FAIRNESS_NOTIFY_EMAILS", "").split(",") if a.strip()]
FAIRNESS_WEBHOOK_URL = _env("FAIRNESS_WEBHOOK_URL", "")
FAIRNESS_WEBHOOK_SECRET = _env("FAIRNESS_WEBHOOK_SECRET", "")
FAIRNESS_WEBHOOK_TIMEOUT_S = float(_env("FAIRNESS_WEBHOOK_TIMEOUT_S", "10"))
# The site's address in absolute links (alert and audit e-mails, webhooks, MLflow tags). Unset or empty: the
# address `make run` (bin/run-all) serves on, from its HOST and PORT, so a run on another port links to itself.
FAIRNESS_PUBLIC_BASE_URL = _env("FAIRNESS_PUBLIC_BASE_URL", "") or served_base_url(SERVE_HOST, SERVE_PORT)
FAIRNESS_RECOVER_INTERVAL_S = int(_env("FAIRNESS_RECOVER_INTERVAL_S", "60"))
# The queue tasks go to by default; integration tests give each worker a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = _env("CELERY_TASK_DEFAULT_QUEUE", "celery")

# --- Sensitive data at rest (governance/fairness/services/vault.py) -----------------------------
# Key-encryption keys: DATA_KEK (base64 of 32 bytes) if set, else the keyring file DATA_KEK_FILE
# (created 0600 on first use; one "kek_id base64" line per key, the last line is the active one).
DATA_KEK = os.environ.get("DATA_KEK", "")
DATA_KEK_FILE = _path("DATA_KEK_FILE", str(VAR_DIR / "keys" / "data.kek"))
# Retention of data sets and prediction batches, in days, per risk tier of their model (a risk
# officer may set another date per file); beat erases expired files every DATA_RETENTION_CHECK_INTERVAL_S.
DATA_RETENTION_DAYS = {tier: int(days) for tier, _, days in
                       (item.partition("=") for item in _env_list("DATA_RETENTION_DAYS", "minimal=365,limited=365,high=730"))}
DATA_RETENTION_CHECK_INTERVAL_S = int(_env("DATA_RETENTION_CHECK_INTERVAL_S", "3600"))

# --- MLflow integration (mlflow area) ---------------------------------------------------------
# A connection names its credentials and webhook secret by environment variable; only variables
# with this prefix can be named, so an admin cannot point a connection at another secret of the
# service (SECRET_KEY, DATABASE_URL, ...) and have it sent to a tracking server of their choosing.
MLFLOW_CREDENTIAL_ENV_PREFIX = _env("MLFLOW_CREDENTIAL_ENV_PREFIX", "MLFLOW_CRED_")
MLFLOW_CREDENTIALS = {name: value for name, value in os.environ.items()
                      if MLFLOW_CREDENTIAL_ENV_PREFIX and name.startswith(MLFLOW_CREDENTIAL_ENV_PREFIX)}
# Webhook freshness: X-MLflow-Timestamp at most this far from now (MLflow's docs suggest 300 s).
MLFLOW_WEBHOOK_MAX_AGE_S = int(_env("MLFLOW_WEBHOOK_MAX_AGE_S", "300"))
# The scheduled reconcile of every model of every connection (MLflow drops events; some send none).
MLFLOW_RECONCILE_INTERVAL_S = int(_env("MLFLOW_RECONCILE_INTERVAL_S", "900"))
MLFLOW_HTTP_TIMEOUT_S = float(_env("MLFLOW_HTTP_TIMEOUT_S", "30"))
# Largest artifact file hashed for a manifest (streamed; the limit only bounds the time spent).
MLFLOW_MAX_ARTIFACT_BYTES = int(_env("MLFLOW_MAX_ARTIFACT_BYTES", str(20 * 1024 * 1024 * 1024)))

# --- Scheduled jobs: the one beat schedule ------------------------------------------------------
# Defaults that django-celery-beat copies into its database; risk officers edit them in the admin.
CELERY_BEAT_SCHEDULE = {
    "ledger-checkpoint": {"task": "audit.tasks.ledger_checkpoint_task", "schedule": float(LEDGER_CHECKPOINT_INTERVAL_S)},
    "ledger-verify-nightly": {"task": "audit.tasks.ledger_verify_task",
                              "schedule": crontab(hour=LEDGER_VERIFY_HOUR_UTC, minute=0)},
    "witness-repush-daily": {"task": "audit.tasks.checkpoint_witness_task", "kwargs": {"force": True},
                             "schedule": crontab(hour=WITNESS_REPUSH_HOUR_UTC, minute=30)},
    # A no-op while TSA_URL is empty.
    "ledger-timestamp-daily": {"task": "audit.tasks.ledger_timestamp_task",
                               "schedule": crontab(hour=TSA_DAILY_HOUR_UTC, minute=7)},
    "approval-expire-due": {"task": "governance.tasks.approval_expire_due_task",
                            "schedule": float(APPROVAL_EXPIRY_CHECK_INTERVAL_S)},
    "idempotency-records-purge": {"task": "governance.tasks.idempotency_records_purge_task",
                                  "schedule": crontab(minute=17)},
    "signing-challenges-purge": {"task": "governance.signatures.tasks.signing_challenges_purge_task",
                                 "schedule": crontab(minute=41)},
    # core.outbox.tasks.outbox_dispatch_task, registered under the name it had before the move to core
    "outbox-dispatch": {"task": "governance.outbox.tasks.outbox_dispatch_task",
                        "schedule": float(OUTBOX_DISPATCH_INTERVAL_S)},
    "sign-in-failures-close": {"task": "governance.tasks.sign_in_failures_close_task",
                               "schedule": float(SIGN_IN_FAILURE_WINDOW_S)},
    "fairness-audit-recover": {"task": "governance.fairness.tasks.fairness_audit_recover_task",
                               "schedule": float(FAIRNESS_RECOVER_INTERVAL_S)},
    "monitoring-runs-due": {"task": "governance.monitoring.tasks.monitor_runs_due_task",
                            "schedule": float(MONITORING_DUE_INTERVAL_S)},
    "monitoring-revalidation-alerts": {"task": "governance.monitoring.tasks.revalidation_alerts_raise_task",
                                       "schedule": crontab(minute=23)},
    "sealed-files-expire": {"task": "governance.fairness.tasks.sealed_files_expire_task",
                            "schedule": float(DATA_RETENTION_CHECK_INTERVAL_S)},
    "mlflow-reconcile-all": {"task": "governance.integrations.mlflow.tasks.mlflow_reconcile_all_task",
                             "schedule": float(MLFLOW_RECONCILE_INTERVAL_S)},
}
