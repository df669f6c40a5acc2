"""Who may do what with a draft: see it (author, intended signer, managers), change it, sign it.

Reads go through Draft.objects.visible_to(user); these rules decide the actions on a draft already found.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed
from signing.models import Draft, SignerCard


def has_signer_card(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and SignerCard.objects.filter(user_id=user.pk).exists()


def can_edit(user: Any, draft: Draft) -> bool:
    """Author and intended signer change a draft until it is signed (not while a batch signs it)."""
    return draft.is_open and user.pk in (draft.author_id, draft.signer_id)


def sign_refusal(user: Any, draft: Draft, *, has_card: bool) -> str:
    """Why the user cannot sign this draft ("" when they can): the button says it instead of failing later."""
    if draft.signer_id != user.pk:
        return _("Nur die vorgesehene Unterzeichnerin oder der vorgesehene Unterzeichner kann signieren.")
    if not has_card:
        return _("Ihnen ist kein eHBA zugeordnet. Die Leitung ordnet Ihren Heilberufsausweis zu.")
    if not draft.is_open:
        return _("Dieser Entwurf wird gerade signiert oder ist bereits signiert.")
    return ""


def require_edit(user: Any, draft: Draft) -> None:
    if user.pk not in (draft.author_id, draft.signer_id):
        raise NotAllowed(_("Diesen Entwurf dürfen nur Verfasser und Unterzeichner ändern."))
