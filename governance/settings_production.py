"""Production settings: `DJANGO_SETTINGS_MODULE=governance.settings_production`.

The values still come from the environment and are read in governance/settings.py; this module
only changes the defaults to the production-safe ones (no debug, HTTPS only, secure cookies,
HSTS) before that module reads them, and refuses to start without an explicit SECRET_KEY.
`python manage.py check --deploy` is clean with it (tests/security/test_deploy_settings.py).
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_PRODUCTION_DEFAULTS = {
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_COOKIES": "true",
    "SECURE_HSTS_SECONDS": "31536000",
}
for _name, _value in _PRODUCTION_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

if not os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured("Production needs SECRET_KEY in the environment (at least 50 random characters).")

from governance.settings import *  # noqa: E402,F403

if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("DEBUG must be false in production.")
