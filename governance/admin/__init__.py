"""The governance admin, by topic; importing this package registers every model admin with the site.

Every write goes through services (`governance.registry.services`, `governance.accounts`), so the admin
enforces the same rules as the API. See `base.py` for what the admins share.
"""

from django.contrib import admin

from governance.admin import accounts, approvals, deployments, registry, schedules  # noqa: F401 (registers the admins)

# Sign-ins to the admin are limited by django-axes' backend (see governance.signin).
admin.site.site_header = "ML governance"
admin.site.site_title = "ML governance"
