"""Orphaned drafts: open drafts whose author, signer and reviewer have all left the sending mailbox (or were
deactivated). Nobody sees such a draft (Draft.objects.visible_to), so nobody could finish or withdraw it. The
mailbox's owners (role "Eigentümer", directly or through a group) find them here and hand each over: they take
it over as its new author, or withdraw it. Until then they see only what they need to decide (subject, patient,
document type, dates, who left), never the document or the text.

Membership is read now, in the database, for every list and every action: a draft whose author came back is no
longer orphaned, and an owner who lost the role finds nothing (404)."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed
from mailbox.models import member_roles, memberships_in_force
from mailbox.permissions import Action, can
from signing import events
from signing.models import Draft
from signing.services.audit import signing_audit
from signing.services.drafts import withdrawal_record


def owned_mailbox_ids(user: Any) -> set[int]:
    """The active mailboxes the user owns now (role "Eigentümer", directly or through a group)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    return {pk for pk, role in member_roles(user).items() if can(role, Action.MANAGE)}


def _is_member(field: str) -> Exists:
    """Whether the draft's user in `field` has a role in the draft's mailbox now (any role, directly or through a
    group; an active account, a mailbox switched on): the rule every page asks (mailbox.models.memberships_in_force),
    as an expression over a draft row."""
    return Exists(memberships_in_force(OuterRef(field)).filter(mailbox_id=OuterRef("mailbox_id")))


def orphaned(queryset: models.QuerySet[Draft] | None = None) -> models.QuerySet[Draft]:
    """Open drafts none of whose author, signer and reviewer is a member of the draft's mailbox now."""
    qs = Draft.objects.all() if queryset is None else queryset
    return (
        qs.filter(state__in=Draft.OPEN_STATES)
        .alias(author_member=_is_member("author_id"), signer_member=_is_member("signer_id"))
        .alias(reviewer_member=_is_member("reviewer_id"))
        .filter(author_member=False, signer_member=False, reviewer_member=False)
    )


def orphaned_for_owner(user: Any) -> models.QuerySet[Draft]:
    """The orphaned drafts of the mailboxes the user owns, oldest change first (with the people who left)."""
    ids = owned_mailbox_ids(user)
    if not ids:
        return Draft.objects.none()
    return (
        orphaned(Draft.objects.filter(mailbox_id__in=ids))
        .select_related("author", "signer", "reviewer", "mailbox")
        .only(
            "pk",
            "document_type",
            "patient_reference",
            "subject",
            "state",
            "version",
            "created_at",
            "updated_at",
            "mailbox__display_name",
            "mailbox__address",
            "author__username",
            "author__first_name",
            "author__last_name",
            "signer__username",
            "signer__first_name",
            "signer__last_name",
            "reviewer__username",
            "reviewer__first_name",
            "reviewer__last_name",
        )
        .order_by("updated_at", "pk")
    )


def _locked(user: Any, pk: int) -> Draft:
    """The draft, locked, if the user owns its mailbox now and it is still open and orphaned; else Draft.DoesNotExist
    (the view answers 404 and nothing changes). Whoever waited for the lock sees the first one's change: the
    orphan check is a statement of its own after the lock, with a fresh snapshot."""
    ids = owned_mailbox_ids(user)
    draft = Draft.objects.select_for_update().get(pk=pk, mailbox_id__in=ids)
    if not draft.is_open:
        raise NotAllowed(_("Der Entwurf wird gerade signiert, ist signiert oder zurückgezogen."))
    if not orphaned(Draft.objects.filter(pk=draft.pk)).exists():
        raise NotAllowed(
            _(
                "Der Entwurf ist nicht mehr verwaist: Er wurde bereits übernommen, oder eine beteiligte Person ist "
                "wieder Mitglied des Postfachs."
            )
        )
    return draft


def _left(draft: Draft) -> dict[str, int]:
    people = {"previous_author": draft.author_id, "previous_signer": draft.signer_id}
    if draft.reviewer_id:
        people["previous_reviewer"] = draft.reviewer_id
    return people


@transaction.atomic
def orphan_take_over(*, user: Any, pk: int) -> Draft:
    """The owner becomes the draft's author: it is theirs from now on (they see it, change it, choose a signer as
    an author does). Signer and reviewer stay as they were until the new author chooses others."""
    draft = _locked(user, pk)
    left = _left(draft)
    draft.author = user
    draft.updated_at = timezone.now()
    draft.save(update_fields=["author", "updated_at"])
    signing_audit(actor=user, action="signing.draft_taken_over", draft=draft, version=draft.version, **left)
    events.broadcast_drafts_changed(user_ids=[user.pk, *left.values()], draft_ids=[draft.pk])
    return draft


@transaction.atomic
def orphan_withdraw(*, user: Any, pk: int, reason: str = "") -> Draft:
    """The owner takes the orphaned draft back, as its author could: it leaves the queue, its history stays."""
    draft = _locked(user, pk)
    withdrawal_record(user=user, draft=draft, reason=reason, orphaned=True, **_left(draft))
    events.broadcast_drafts_changed(user_ids=list(_left(draft).values()), draft_ids=[draft.pk])
    return draft
