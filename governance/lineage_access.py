"""Governance's answers to lineage's two questions about the nodes that stand for its records.

Lineage holds a node per model version ("governance.modelversion", version pk) and per deployment
("governance.deployment", deployment pk), recorded by `governance.registry.services`. It cannot import us,
so `GovernanceConfig.ready` registers these two callables in `lineage.visibility`:

- `resolve_lineage_subject`: the registered model (and its team) behind such a node;
- `visible_lineage_nodes`: the nodes whose model the user may see, by the one rule for that,
  `selectors.registered_model_list` (guardian object permissions, team membership, approver tiers,
  `view_all_registeredmodels`, a service token's model list). Any other ref type is hidden.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from governance.models import Deployment, ModelVersion, RegisteredModel
from governance.selectors import registered_model_list
from lineage.models import LineageNode
from lineage.visibility import GovernedSubject

MODEL_VERSION_REF = "governance.modelversion"
DEPLOYMENT_REF = "governance.deployment"
_REF_MODELS: dict[str, type[ModelVersion] | type[Deployment]] = {MODEL_VERSION_REF: ModelVersion,
                                                                 DEPLOYMENT_REF: Deployment}


def resolve_lineage_subject(ref_type: str, ref_id: str) -> GovernedSubject | None:
    """The registered model behind a model-version or deployment node; None for anything else or a missing record."""
    record_model = _REF_MODELS.get(ref_type)
    if record_model is None or not ref_id.isdigit():
        return None
    model = (RegisteredModel.objects.select_related("team")
             .filter(pk__in=record_model.objects.filter(pk=int(ref_id)).values("model_id")).first())
    if model is None:
        return None
    return GovernedSubject(record_type="governance.registeredmodel", record_id=str(model.pk), name=model.name,
                           owner=f"team:{model.team.name}")


def visible_lineage_nodes(user: Any, nodes: QuerySet[LineageNode]) -> QuerySet[LineageNode]:
    """The model-version and deployment nodes among `nodes` whose model `user` may see."""
    models = registered_model_list(user=user).order_by().values("pk")
    visible = Q()
    for ref_type, record_model in _REF_MODELS.items():
        refs = (record_model.objects.filter(model__in=models).order_by()
                .annotate(ref=Cast("pk", output_field=CharField())).values("ref"))
        visible |= Q(ref_type=ref_type, ref_id__in=refs)
    return nodes.filter(visible)
