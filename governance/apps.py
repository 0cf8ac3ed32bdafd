from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import signals
        from governance.lineage_access import resolve_lineage_subject, visible_lineage_nodes
        from lineage.visibility import register_subject_resolver, register_visibility_filter

        signals.connect()
        # Lineage cannot import governance: it asks these which record a node stands for and who may see it.
        register_subject_resolver(resolve_lineage_subject)
        register_visibility_filter(visible_lineage_nodes)
