"""What a service token restricted to some models reads of the ledger: the entries about those models.

Audit cannot import governance, so `GovernanceConfig.ready` registers `restricted_token_entries` in
`audit.selectors`. The rule: a request authenticated with a token restricted to models M reads only
the entries whose subject is
- a model of M (`governance.registeredmodel`),
- a version or a deployment of a model of M (`governance.modelversion`, `governance.deployment`),
- an approval request about such a version, or a decision on one (`governance.approvalrequest`,
  `governance.approvaldecision`),
- the lineage node recorded for such a version or deployment (`lineage.lineagenode`).
Everything else (other models, accounts, roles, policies, datasets, the ledger's own entries) is
left out of lists and is 404 on detail. Any other caller reads what its role lets it read.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from audit.models import LedgerEntry
from governance.lineage_access import DEPLOYMENT_REF, MODEL_VERSION_REF
from governance.models import ApprovalDecision, ApprovalRequest, Deployment, ModelVersion, RegisteredModel
from governance.permissions import token_model_ids
from lineage.models import LineageNode


def _ids(queryset: QuerySet[Any]) -> QuerySet[Any]:
    return queryset.order_by().annotate(ref=Cast("pk", output_field=CharField())).values("ref")


def restricted_token_entries(user: Any, entries: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
    """`entries` as `user` may read them: unchanged unless the request's token is restricted to models."""
    limited = token_model_ids(user)
    if limited is None:
        return entries
    models = RegisteredModel.objects.filter(pk__in=limited)
    versions = ModelVersion.objects.filter(model__in=models)
    deployments = Deployment.objects.filter(model__in=models)
    requests = ApprovalRequest.objects.filter(version__in=versions)
    decisions = ApprovalDecision.objects.filter(request__in=requests)
    nodes = LineageNode.objects.filter(Q(ref_type=MODEL_VERSION_REF, ref_id__in=_ids(versions))
                                       | Q(ref_type=DEPLOYMENT_REF, ref_id__in=_ids(deployments)))
    about = Q()
    for subject_type, records in (("governance.registeredmodel", models), ("governance.modelversion", versions),
                                  ("governance.deployment", deployments), ("governance.approvalrequest", requests),
                                  ("governance.approvaldecision", decisions), ("lineage.lineagenode", nodes)):
        about |= Q(subject_type=subject_type, subject_id__in=_ids(records))
    return entries.filter(about)
