"""Who sees the operations page: superusers, and staff given the permission ``operations.view_operations``.

The page is for the hospital's IT (Konnektor, cards, Clientmodul, workers), not for the house's management: the
Leitung administers mailboxes and access and reads the audit, and sees its accounts' fetch state there. A manager
who also looks after the technology gets the permission (and staff status) in /admin/.

The operations app keeps no model of its own for this page, so the permission hangs on a content type of its own
(``operations.status``), created after every migrate.
"""

from __future__ import annotations

from typing import Any

PERMISSION_CODENAME = "view_operations"
PERMISSION = f"operations.{PERMISSION_CODENAME}"
CONTENT_TYPE_MODEL = "status"


def can_view_operations(user: Any) -> bool:
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    # Staff first: ward users (never staff) cost no permission query on any page.
    return bool(user.is_staff and user.has_perm(PERMISSION))


def ensure_permission(using: str = "default", **_: Any) -> None:
    """post_migrate: the permission exists in every database, also in tests and after a flush."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import DEFAULT_DB_ALIAS

    if using != DEFAULT_DB_ALIAS:  # the embedded default's channel layer database has no auth tables
        return
    content_type, _created = ContentType.objects.get_or_create(app_label="operations", model=CONTENT_TYPE_MODEL)
    Permission.objects.update_or_create(
        content_type=content_type,
        codename=PERMISSION_CODENAME,
        defaults={"name": "Betriebsseite, Zustand der TI-Anbindung ansehen"},
    )
