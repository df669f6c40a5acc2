"""Who may do what with a draft: see it (author, intended signer, reviewer — while members of its sending
mailbox), change it, sign it.

Reads go through Draft.objects.visible_to(user); these rules decide the actions on a draft already found.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kimportal.errors import NotAllowed
from mailbox.models import member_roles
from mailbox.permissions import Action, can
from signing.models import Draft, SignerCard

# Why a signer may not (or no longer) sign a draft of a department; shown where the choice or the signature fails.
NOT_SIGNER_OF_MAILBOX = gettext_lazy(
    "Sie dürfen für das Absender-Postfach dieses Entwurfs nicht (mehr) signieren: Dafür brauchen Sie dort die "
    "Rolle „Bearbeiten“ oder „Eigentümer“."
)
SIGNER_NOT_ALLOWED = gettext_lazy(
    "%(name)s kann für das Postfach „%(mailbox)s“ nicht signieren: Unterzeichnen kann nur, wer einen eHBA hat und "
    "dort Mitglied mit der Rolle „Bearbeiten“ oder „Eigentümer“ ist."
)
SIGNER_GONE = gettext_lazy(
    "%(name)s kann für dieses Postfach nicht mehr signieren (Mitgliedschaft oder eHBA fehlt). Bitte wählen Sie "
    "unter „Bearbeiten“ eine andere Unterzeichnerin oder einen anderen Unterzeichner."
)
SIGNER_REFUSED_IN_BATCH = gettext_lazy(
    "Nicht signiert: Die Unterzeichnerin oder der Unterzeichner darf für das Absender-Postfach nicht mehr "
    "signieren. Der Entwurf bleibt in der Liste; bitte eine andere Person als Unterzeichner wählen."
)


def has_signer_card(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and SignerCard.objects.filter(user_id=user.pk).exists()


def signing_mailbox_ids(user: Any, *, has_card: bool | None = None) -> set[int]:
    """The departments (sending mailboxes) the user may sign for now: an active member with the processing role
    or more (directly or through a group) who holds an eHBA. The signed letter leaves from that mailbox, so its
    signer needs the right to send from it, as its author does.

    Read now (within a request: once per request, kimportal.requestscope): a batch or a socket asks again
    instead of trusting what was true when the draft was queued."""
    if not getattr(user, "is_authenticated", False):
        return set()
    if has_card is None:
        has_card = has_signer_card(user)
    if not has_card:
        return set()
    return {pk for pk, role in member_roles(user).items() if can(role, Action.PROCESS)}


def may_sign_for(user: Any, mailbox_id: int) -> bool:
    return mailbox_id in signing_mailbox_ids(user)


def can_edit(user: Any, draft: Draft) -> bool:
    """Author and intended signer change a draft until it is signed (not while a batch signs it)."""
    return draft.is_open and user.pk in (draft.author_id, draft.signer_id)


def sign_refusal(user: Any, draft: Draft, *, has_card: bool) -> str:
    """Why the user cannot sign this draft ("" when they can): the button says it instead of failing later."""
    if draft.signer_id != user.pk:
        return _("Nur die vorgesehene Unterzeichnerin oder der vorgesehene Unterzeichner kann signieren.")
    if not has_card:
        return _("Ihnen ist kein eHBA zugeordnet. Die Leitung ordnet Ihren Heilberufsausweis zu.")
    if draft.mailbox_id not in signing_mailbox_ids(user, has_card=has_card):
        return str(NOT_SIGNER_OF_MAILBOX)
    if not draft.is_open:
        return _("Dieser Entwurf wird gerade signiert oder ist bereits signiert.")
    return ""


def require_edit(user: Any, draft: Draft) -> None:
    if user.pk not in (draft.author_id, draft.signer_id):
        raise NotAllowed(_("Diesen Entwurf dürfen nur Verfasser und Unterzeichner ändern."))
