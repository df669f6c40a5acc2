"""Drafts, batches and signatures as a user may see them; lists filtered and sorted for the queue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone

from mailbox.models import Mailbox, Membership, member_roles
from mailbox.permissions import Action, can, members_q
from signing.models import BatchItem, Draft, Signature, SignatureBatch, Workplace
from signing.texts import scoped

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


def _signing_memberships(mailbox_ids: Iterable[int]) -> QuerySet[Membership]:
    """Memberships that let their holder sign for these mailboxes (with an eHBA): processing role or more."""
    roles = [r for r in Membership.RANK if can(r, Action.PROCESS)]
    return Membership.objects.filter(mailbox_id__in=list(mailbox_ids), mailbox__is_active=True, role__in=roles)


def signer_choices(mailboxes: Iterable[Mailbox | int]) -> QuerySet[Any]:
    """Who may be asked to sign drafts sent from these mailboxes: active users with an eHBA who are members of one
    of them with the processing role or more (directly or through a group). The form offers them; the form and
    the service check the one chosen against the draft's own mailbox (signing.permissions.signing_mailbox_ids)."""
    ids = [m if isinstance(m, int) else m.pk for m in mailboxes]
    user_model = get_user_model()
    qs = user_model.objects.filter(members_q(_signing_memberships(ids)), is_active=True, signer_card__isnull=False)
    # The joins over groups repeat rows: the ids, then the users once each.
    return user_model.objects.filter(pk__in=qs.values("pk")).order_by("last_name", "first_name", "username")


def drafts_signer_gone(drafts: Iterable[Draft]) -> set[int]:
    """The ids of these drafts whose chosen signer may no longer sign for the draft's mailbox (left it, lost the
    processing role or the eHBA, or was deactivated): such a draft waits for its author to choose another signer.
    One query for any number of drafts."""
    drafts = list(drafts)
    if not drafts:
        return set()
    qualified = get_user_model().objects.filter(
        pk__in={d.signer_id for d in drafts}, is_active=True, signer_card__isnull=False
    )
    memberships = _signing_memberships({d.mailbox_id for d in drafts})
    direct = memberships.filter(user__in=qualified).values_list("user_id", "mailbox_id")
    via_group = memberships.filter(group__user__in=qualified).values_list("group__user", "mailbox_id")
    allowed = set(direct.union(via_group))
    return {d.pk for d in drafts if (d.signer_id, d.mailbox_id) not in allowed}


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


def batch_context(batch: SignatureBatch, user: Any) -> dict[str, Any]:
    """A batch with its items, grouped for the live page and its summary (two queries: the items, the drafts of
    them the user may see now). An item whose draft the user may no longer see (they left its department) keeps
    its state but shows no subject, patient or reason (item.hidden); the batch's reason names a missing document
    only while its draft is visible (signing.texts.scoped)."""
    items = list(batch_items(batch))
    visible = set(
        Draft.objects.visible_to(user).filter(pk__in=[i.draft_id for i in items]).values_list("pk", flat=True)
    )
    filenames = {i.draft.filename for i in items if i.draft_id in visible}
    for item in items:
        # Both read by the template.
        hidden = item.hidden = item.draft_id not in visible  # type: ignore[attr-defined]
        item.reason = "" if hidden else scoped(item.text, drafts=visible, filenames=filenames)  # type: ignore[attr-defined]
    return {
        "batch": batch,
        "batch_error": scoped(batch.error_text, drafts=visible, filenames=filenames),
        "items": items,
        "signed": [i for i in items if i.state == BatchItem.State.SIGNED],
        "failed": [i for i in items if i.state == BatchItem.State.FAILED],
        "not_signed": [i for i in items if i.state == BatchItem.State.NOT_SIGNED],
        "pending": [i for i in items if i.state == BatchItem.State.PENDING],
    }


def batch_rows_for_user(user: Any, *, limit: int = 200) -> list[SignatureBatch]:
    """The user's batches for their list, each with its reason as the user may read it now (batch.error_display:
    a missing document named only while its draft is visible; one query more for the drafts of those batches)."""
    batches = list(batch_list_for_user(user)[:limit])
    ids = [b.pk for b in batches if b.error_text]
    seen: dict[int, tuple[set[int], set[str]]] = {pk: (set(), set()) for pk in ids}
    rows = (
        Draft.objects.visible_to(user)
        .filter(batch_items__batch_id__in=ids)
        .values_list("batch_items__batch_id", "pk", "filename")
    )
    for batch_id, draft_id, filename in rows if ids else ():
        seen[batch_id][0].add(draft_id)
        seen[batch_id][1].add(filename)
    for b in batches:
        drafts, filenames = seen.get(b.pk, (set(), set()))
        b.error_display = scoped(b.error_text, drafts=drafts, filenames=filenames)  # type: ignore[attr-defined]
    return batches
