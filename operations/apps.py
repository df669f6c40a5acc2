from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = _("Betrieb")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from operations.services.access import ensure_permission

        # The operations page's permission has no model to hang on (operations.services.access).
        post_migrate.connect(ensure_permission, sender=self, dispatch_uid="operations.ensure_permission")
