from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import signals
        from governance.lineage_access import lineage_owners, resolve_lineage_subject, visible_lineage_nodes
        from lineage.visibility import register_owner_resolver, register_subject_resolver, register_visibility_filter

        signals.connect()
        # Lineage cannot import governance: it asks these which record a node stands for and who may see it.
        register_subject_resolver(resolve_lineage_subject)
        register_visibility_filter(visible_lineage_nodes)
        register_owner_resolver(lineage_owners)
        # Audit cannot import governance either: a token restricted to some models reads only their entries.
        from audit.selectors import register_entry_filter
        from governance.ledger_access import restricted_token_entries

        register_entry_filter(restricted_token_entries)
