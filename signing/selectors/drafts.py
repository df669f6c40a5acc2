"""Drafts, batches and signatures as a user may see them; lists filtered and sorted for the queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone

from mailbox.models import Mailbox, member_roles
from mailbox.permissions import Action, can
from signing.models import BatchItem, Draft, Signature, SignatureBatch, Workplace

# Sort keys of the lists (the form offers them); each ends with the pk so the order is total.
SORTS: dict[str, tuple[str, ...]] = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "patient": ("patient_reference", "id"),
    "signer": ("signer__last_name", "signer__first_name", "id"),
    "author": ("author__last_name", "author__first_name", "id"),
    "type": ("document_type", "-created_at", "id"),
    "state": ("state", "-created_at", "id"),
}

# A list shows at most this many rows (a batch takes at most 250); filters narrow it down.
LIST_LIMIT = 500


@dataclass(frozen=True)
class DraftFilter:
    signer: int | None = None
    author: int | None = None
    patient: str = ""
    document_type: str = ""
    state: str = ""  # "" = open (in the queue), "all", or one Draft.State
    review: str = ""  # "" = any, or one Draft.Review
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "-created"


def draft_list_for_user(user: Any, filters: DraftFilter | None = None, *, own_queue: bool = False) -> QuerySet[Draft]:
    """The central list (everything the user may see) or the user's own queue (drafts they are to sign)."""
    f = filters or DraftFilter()
    qs = Draft.objects.visible_to(user).select_related("author", "signer", "reviewer", "outgoing")
    if own_queue:
        qs = qs.filter(signer=user)
    elif f.signer:
        qs = qs.filter(signer_id=f.signer)
    if f.author:
        qs = qs.filter(author_id=f.author)
    if f.patient:
        qs = qs.filter(patient_reference__icontains=f.patient)
    if f.document_type:
        qs = qs.filter(document_type=f.document_type)
    if f.review:
        qs = qs.filter(review_state=f.review)
    if f.state == "":
        qs = qs.filter(state__in=Draft.OPEN_STATES)
    elif f.state != "all":
        qs = qs.filter(state=f.state)
    tz = timezone.get_current_timezone()
    if f.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(f.date_from, time.min, tzinfo=tz))
    if f.date_to:
        qs = qs.filter(created_at__lte=datetime.combine(f.date_to, time.max, tzinfo=tz))
    return qs.order_by(*SORTS.get(f.sort, SORTS["-created"]))


def draft_get_for_user(user: Any, pk: int) -> Draft:
    return (
        Draft.objects.visible_to(user).select_related("author", "signer", "mailbox", "reviewer", "outgoing").get(pk=pk)
    )


def drafts_by_ids_for_user(user: Any, ids: list[int]) -> list[Draft]:
    return list(Draft.objects.visible_to(user).select_related("author", "signer").filter(pk__in=ids))


def signature_get_for_user(user: Any, draft: Draft) -> Signature | None:
    """The draft's last verified signature (the draft was found through the user's selector)."""
    return draft.signatures.filter(verified_at__isnull=False, verification_error="").order_by("-signed_at").first()


def batch_list_for_user(user: Any) -> QuerySet[SignatureBatch]:
    """Batches the user started (their items name patients: nobody else's, managers' neither)."""
    qs = SignatureBatch.objects.select_related("signer", "workplace").filter(signer_id=user.pk)
    return qs.order_by("-created_at", "-id")


def batch_get_for_user(user: Any, pk: int) -> SignatureBatch:
    return batch_list_for_user(user).get(pk=pk)


def batch_items(batch: SignatureBatch) -> QuerySet[BatchItem]:
    return batch.items.select_related("draft").order_by("position")


def signer_choices() -> QuerySet[Any]:
    """Who may be asked to sign: active users with an eHBA."""
    return (
        get_user_model()
        .objects.filter(is_active=True, signer_card__isnull=False)
        .order_by("last_name", "first_name", "username")
    )


def sending_mailboxes(user: Any) -> QuerySet[Mailbox]:
    """Mailboxes the user may send from (processing role or more)."""
    roles = member_roles(user)
    ids = [pk for pk, role in roles.items() if can(role, Action.PROCESS)]
    return Mailbox.objects.filter(pk__in=ids, is_active=True).order_by("display_name")


def workplace_choices() -> QuerySet[Workplace]:
    return Workplace.objects.filter(is_active=True).order_by("label")


def user_filter_choices(user: Any) -> QuerySet[Any]:
    """People who appear as author or signer of drafts the user can see (the list's filters)."""
    visible = Draft.objects.visible_to(user)
    return (
        get_user_model()
        .objects.filter(Q(pk__in=visible.values("author_id")) | Q(pk__in=visible.values("signer_id")))
        .order_by("last_name", "first_name", "username")
    )


def batch_context(batch: SignatureBatch) -> dict[str, Any]:
    """A batch with its items, grouped for the live page and its summary (one query for the items)."""
    items = list(batch_items(batch))
    return {
        "batch": batch,
        "items": items,
        "signed": [i for i in items if i.state == BatchItem.State.SIGNED],
        "failed": [i for i in items if i.state == BatchItem.State.FAILED],
        "not_signed": [i for i in items if i.state == BatchItem.State.NOT_SIGNED],
        "pending": [i for i in items if i.state == BatchItem.State.PENDING],
    }
