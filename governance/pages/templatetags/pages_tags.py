"""Template helpers for the pages and the admin links to them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template

from core.actor import visible as _visible

register = template.Library()


@register.filter
def visible(text: Any) -> str:
    """Non-ASCII shown as escapes (`user:\\u0430lice`), so look-alike actors never look the same."""
    return _visible(str(text))


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    try:
        return mapping.get(key, "")
    except AttributeError:
        return ""


def page_url_for(obj: Any) -> str | None:
    """The page showing an admin object, for governance objects that have one (no extra query)."""
    from governance.models import ApprovalDecision, ApprovalRequest, Deployment, ModelVersion, RegisteredModel

    if isinstance(obj, RegisteredModel):
        return f"/models/{obj.name}/"
    if isinstance(obj, ModelVersion):
        return f"/models/{obj.model.name}/?{urlencode({'version': obj.label})}"
    if isinstance(obj, ApprovalRequest):
        return f"/models/{obj.version.model.name}/?{urlencode({'version': obj.version.label})}#request-{obj.pk}"
    if isinstance(obj, ApprovalDecision):
        request = obj.request
        return f"/models/{request.version.model.name}/?{urlencode({'version': request.version.label})}#request-{request.pk}"
    if isinstance(obj, Deployment):
        return f"/models/{obj.model.name}/#deployments"
    return None


def ledger_url_for(obj: Any) -> str:
    meta = obj._meta
    return "/ledger/?" + urlencode({"subject_type": f"{meta.app_label}.{meta.model_name}", "subject_id": str(obj.pk)})


@register.inclusion_tag("pages/_admin_links.html", takes_context=True)
def admin_object_links(context: template.Context, obj: Any) -> dict[str, Any]:
    """Links from an admin change page to the object's page and to its ledger entries."""
    request = context.get("request")
    user = getattr(request, "user", None)
    from audit.selectors import can_read_ledger

    return {"page_url": page_url_for(obj) if obj is not None else None,
            "ledger_url": ledger_url_for(obj) if obj is not None and can_read_ledger(user) else None}
