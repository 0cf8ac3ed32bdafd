"""Governance's answers to lineage's two questions about the nodes that stand for its records.

Lineage holds a node per model version ("governance.modelversion", version pk) and per deployment
("governance.deployment", deployment pk), recorded by `governance.registry.services`. It cannot import us,
so `GovernanceConfig.ready` registers these two callables in `lineage.visibility`:

- `resolve_lineage_subject`: the registered model (and its team) behind such a node;
- `visible_lineage_nodes`: the nodes whose model the user may see, by the one rule for that,
  `selectors.registered_model_list` (guardian object permissions, team membership, approver tiers,
  `view_all_registeredmodels`, a service token's model list). Any other ref type is hidden.
- `lineage_owners`: whose lineage records (datasets, runs, keys, attestations, owned by a team as
  "team:<name>") a user reads and for which teams they write:
  - write: the teams whose group the user is in, and the teams of the models the user holds the
    change permission on as an object permission (a service account bound to a team's models);
  - read: every team for those who see every model (superusers, `view_all_registeredmodels`),
    otherwise the write teams and the teams of every model the user may see;
  - a token restricted to some models: the teams of those models only, for reading, and for writing
    if it is a write token. Admins' global "manage every model" right gives no lineage team.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from guardian.shortcuts import get_objects_for_user

from governance.models import Deployment, ModelVersion, RegisteredModel, Team, TokenScope
from governance.permissions import CHANGE_MODEL, VIEW_ALL, is_active_user, request_token, token_model_ids
from governance.selectors import registered_model_list
from lineage.models import LineageNode
from lineage.visibility import NO_OWNERS, GovernedSubject, LineageOwners

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
                           owner=team_owner(model.team))


def team_owner(team: Team) -> str:
    """How lineage names a team as the owner of its records."""
    return f"team:{team.name}"


def _owners(teams: Any) -> frozenset[str]:
    return frozenset(f"team:{name}" for name in teams.values_list("name", flat=True))


def lineage_owners(user: Any) -> LineageOwners:
    """Whose lineage records `user` reads and for which teams they write (see the module docstring)."""
    if not is_active_user(user):
        return NO_OWNERS
    limited = token_model_ids(user)
    if limited is not None:
        teams = _owners(Team.objects.filter(models__pk__in=limited).distinct())
        token = request_token(user)
        return LineageOwners(read=teams, write=teams if token.scope == TokenScope.WRITE else frozenset())
    bound = get_objects_for_user(user, CHANGE_MODEL, klass=RegisteredModel, accept_global_perms=False,
                                 with_superuser=False)
    write = _owners(Team.objects.filter(Q(group__user=user) | Q(models__in=bound.values("pk"))).distinct())
    token = request_token(user)
    if token is not None and token.scope != TokenScope.WRITE:
        write = frozenset()
    if user.is_superuser or user.has_perm(VIEW_ALL):
        return LineageOwners(read=None, write=write)
    seen = _owners(Team.objects.filter(models__in=registered_model_list(user=user).order_by().values("pk")).distinct())
    return LineageOwners(read=write | seen, write=write)


def visible_lineage_nodes(user: Any, nodes: QuerySet[LineageNode]) -> QuerySet[LineageNode]:
    """The model-version and deployment nodes among `nodes` whose model `user` may see."""
    models = registered_model_list(user=user).order_by().values("pk")
    visible = Q()
    for ref_type, record_model in _REF_MODELS.items():
        refs = (record_model.objects.filter(model__in=models).order_by()
                .annotate(ref=Cast("pk", output_field=CharField())).values("ref"))
        visible |= Q(ref_type=ref_type, ref_id__in=refs)
    return nodes.filter(visible)
