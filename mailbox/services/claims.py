"""The read-lock (claim): who works on a message right now.

A claim is a lease on the message row, taken with one conditional UPDATE: on PostgreSQL two users
claiming in the same millisecond serialize on the row and only one UPDATE matches. It is valid while
claim_expires_at is in the future, so it expires to the second without any cron. The open page's
heartbeat renews it; closing the page releases it, unless another page load of the same user took
it over (a reload).

Page tokens name one page load of one user on one message. They are signed, so a socket can only
speak for a page the server handed out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from kimportal.errors import NotAllowed
from kimportal.prepared import PreparedQuery, PreparedUpdate
from mailbox import events
from mailbox.models import Mailbox, Message, Notification
from mailbox.permissions import Action, can, require
from mailbox.selectors.mailboxes import display_name
from mailbox.services.audit import audit_record
from mailbox.services.guard import short
from mailbox.services.notifications import notify
from mailbox.services.presence import presence_beat, presence_leave

# A page load that renewed the lock this recently may still be connecting its socket.
PAGE_HANDOVER_SECONDS = 15

_NAMES = ("first_name", "last_name", "username")
# A claim's outcome as callers show it (holder, since, version) and the audit's snapshots — not the bodies.
CLAIM_VIEW_FIELDS = (
    *("mailbox_id", "mailbox__address", "subject", "state", "version"),
    *("claimed_by_id", "claimed_at", "claim_expires_at", "claim_renewed_at", "claim_page", "first_claimed_at"),
    *(f"claimed_by__{name}" for name in _NAMES),
)
# What leaving decides on (the hand-over) and what releasing audits.
LEAVE_FIELDS = ("mailbox_id", "mailbox__address", "subject", "claimed_by_id", "claim_page", "claim_renewed_at")


def claim_seconds() -> int:
    return int(getattr(settings, "KIMPORTAL_CLAIM_SECONDS", 60))


def claim_cleared() -> dict[str, Any]:
    """The fields of a message without a read-lock: the one place that says what 'free' means."""
    return {
        "claimed_by": None,
        "claimed_at": None,
        "claim_expires_at": None,
        "claim_renewed_at": None,
        "claim_page": "",
    }


def page_token_new(*, user: Any, message_id: int) -> str:
    nonce = secrets.token_hex(8)
    return f"{nonce}.{_page_signature(user.pk, message_id, nonce)}"


def page_token_valid(token: str, *, user: Any, message_id: int) -> bool:
    nonce, _dot, signature = (token or "").partition(".")
    if len(nonce) != 16 or not signature:
        return False
    return constant_time_compare(signature, _page_signature(user.pk, message_id, nonce))


def _page_signature(user_id: int, message_id: int, nonce: str) -> str:
    return salted_hmac("mailbox.page", f"{user_id}:{message_id}:{nonce}").hexdigest()[:16]


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    renewed: bool
    message: Message


def message_claim(*, user: Any, message: Message, page: str = "", now: datetime | None = None) -> ClaimResult:
    """Take or renew the read-lock. Never raises for a held lock: the caller shows who holds it.

    `page` names the page load that claims (detail view, claim button); heartbeats renew without it.
    One transaction with its audit event: a claim is never unaudited, and the row stays locked by
    the UPDATE until commit, so a lock broken "in between" cannot be audited as ours.
    """
    # Refused before any write: callers (the heartbeat) catch NotAllowed and carry on in their transaction.
    require(user, message.mailbox_id, Action.PROCESS)
    return _claim(user=user, message=message, page=page, now=now or timezone.now())


def _claim_update(
    message_id: int, user_id: int, now: datetime, until: datetime, page: str | None
) -> tuple[QuerySet[Message], dict[str, Any]]:
    """The one statement that decides a race: free, expired, or already ours. A renewal keeps the original
    claimed_at ("seit 10:42"), a new claim starts now. A new page claim names its page (`page`); a heartbeat
    renewal (None) keeps the page that claimed."""
    still_mine = Q(claimed_by_id=user_id, claim_expires_at__gt=now)
    queryset = Message.objects.filter(pk=message_id).filter(
        Q(claimed_by__isnull=True) | Q(claim_expires_at__lte=now) | Q(claimed_by_id=user_id)
    )
    return queryset, {
        "claimed_by_id": user_id,
        "claimed_at": Case(When(still_mine, then=F("claimed_at")), default=Value(now)),
        "claim_expires_at": until,
        "claim_renewed_at": now,
        "first_claimed_at": Case(When(first_claimed_at__isnull=True, then=Value(now)), default=F("first_claimed_at")),
        "claim_page": Value(page)
        if page is not None
        else Case(When(still_mine, then=F("claim_page")), default=Value("")),
    }


# The claim's own columns that callers show and the audit snapshots (CLAIM_VIEW_FIELDS without the joined ones), in
# the model's order, as Model.from_db takes them.
_CLAIM_OWN_FIELDS = tuple(
    field.attname
    for field in Message._meta.concrete_fields
    if field.attname == "id" or field.attname in CLAIM_VIEW_FIELDS
)
# Every message page claims: the UPDATE is compiled once per process (a third of a claim's CPU was compiling it)
# and returns what it wrote (re-reading the row was another third). One per shape: with and without a page.
_CLAIM_PAGE = PreparedUpdate(
    lambda message_id, user_id, now, until, page: _claim_update(message_id, user_id, now, until, page),
    returning=_CLAIM_OWN_FIELDS,
)
_CLAIM_RENEW = PreparedUpdate(
    lambda message_id, user_id, now, until: _claim_update(message_id, user_id, now, until, None),
    returning=_CLAIM_OWN_FIELDS,
)
_ADDRESS = PreparedQuery(lambda mailbox_id: Mailbox.objects.filter(pk=mailbox_id).values_list("address"))


# No savepoint when nested (opening a message claims inside its own transaction): an error past the
# permission check is a real failure that rolls back the caller's transaction anyway; a savepoint
# only cost two round trips per page view.
@transaction.atomic(savepoint=False)
def _claim(*, user: Any, message: Message, page: str, now: datetime) -> ClaimResult:
    until = now + timedelta(seconds=claim_seconds())
    fresh: Message | None = None
    if PreparedUpdate.supported():
        # UPDATE … RETURNING: the row as won comes back with the write; a lost race reads the holder below.
        written = (
            _CLAIM_PAGE.rows(message.pk, user.pk, now, until, page)
            if page
            else _CLAIM_RENEW.rows(message.pk, user.pk, now, until)
        )
        won = bool(written)
        if won:
            fresh = _claimed_message(written[0], user=user, message=message)
    else:
        queryset, values = _claim_update(message.pk, user.pk, now, until, page or None)
        won = bool(queryset.update(**values))
    if fresh is None:
        # What callers show of a claim (holder, since, version) and the audit's snapshots: not the bodies.
        fresh = Message.objects.select_related("claimed_by", "mailbox").only(*CLAIM_VIEW_FIELDS).get(pk=message.pk)
    renewed = won and fresh.claimed_at != now
    if won and not renewed:
        audit_record(actor=user, action="message.claimed", message=fresh, until=until.isoformat())
        events.broadcast_message_changed(mailbox_id=fresh.mailbox_id, message_id=fresh.pk, lock=True)
    return ClaimResult(won=won, renewed=renewed, message=fresh)


def _claimed_message(row: tuple[Any, ...], *, user: Any, message: Message) -> Message:
    """The row as the claim wrote it, loaded as the SELECT of CLAIM_VIEW_FIELDS would load it: its holder is the
    claiming user, its mailbox the one the caller loaded (its address read once when the caller did not)."""
    fresh = Message.from_db("default", list(_CLAIM_OWN_FIELDS), list(row))
    names = {"id": user.pk, **{name: getattr(user, name) for name in _NAMES}}
    fresh.claimed_by = _loaded(Message._meta.get_field("claimed_by").related_model, names)
    cached = message.mailbox if Message.mailbox.is_cached(message) else None
    if cached is not None and cached.pk == fresh.mailbox_id and "address" in cached.__dict__:
        address = cached.address
    else:
        found = _ADDRESS.rows(fresh.mailbox_id)
        address = found[0][0] if found else ""
    fresh.mailbox = _loaded(Mailbox, {"id": fresh.mailbox_id, "address": address})
    return fresh


def _loaded(model: Any, values: dict[str, Any]) -> Any:
    """An instance with only these fields loaded, as .only() loads it (Model.from_db takes them in model order)."""
    fields = [field.attname for field in model._meta.concrete_fields if field.attname in values]
    return model.from_db("default", fields, [values[name] for name in fields])


def _release_update(message_id: int, user_id: int) -> tuple[QuerySet[Message], dict[str, Any]]:
    return Message.objects.filter(pk=message_id, claimed_by_id=user_id), claim_cleared()


# Every page that closes with the user's lock releases it: compiled once (kimportal.prepared), not per release.
_RELEASE = PreparedUpdate(_release_update, returning=("id",))


@transaction.atomic(savepoint=False)
def message_release(*, user: Any, message: Message, reason: str = "") -> bool:
    if PreparedUpdate.supported():
        released = bool(_RELEASE.rows(message.pk, user.pk))
    else:
        queryset, values = _release_update(message.pk, user.pk)
        released = bool(queryset.update(**values))
    if released:
        audit_record(actor=user, action="message.released", message=message, reason=reason)
        events.broadcast_message_changed(mailbox_id=message.mailbox_id, message_id=message.pk, lock=True)
    return released


@transaction.atomic
def message_break_lock(*, user: Any, message: Message) -> bool:
    """An owner frees a colleague's lock; the holder is told, and it is audited."""
    require(user, message.mailbox_id, Action.BREAK_LOCK)
    current = Message.objects.select_for_update(of=("self",)).select_related("claimed_by").get(pk=message.pk)
    holder = current.claimed_by
    if holder is None or not current.claim_active():
        return False
    Message.objects.filter(pk=message.pk).update(**claim_cleared())
    audit_record(actor=user, action="message.lock_broken", message=current, holder=holder.pk)
    if holder.pk != user.pk:
        notify(
            [holder],
            kind=Notification.Kind.LOCK_BROKEN,
            message=current,
            actor=user,
            params={"name": display_name(user), "subject": short(current.subject)},
        )
    events.broadcast_message_changed(mailbox_id=current.mailbox_id, message_id=current.pk, lock=True)
    return True


def _held_query(message_id: int, user_id: int) -> QuerySet[Message, tuple[int, str]]:
    return Message.objects.filter(pk=message_id, claimed_by_id=user_id).values_list("mailbox_id", "mailbox__address")


# Every open page's heartbeat asks it: compiled once (kimportal.prepared), not per beat.
_HELD = PreparedQuery(_held_query)


def message_heartbeat(
    *,
    user: Any,
    message_id: int,
    channel_name: str,
    writing: bool,
    mailbox_role: tuple[int, str | None] | None = None,
) -> bool:
    """An open page says it is still there: presence refreshed, and the user's lease on it renewed.

    Returns False when the page's presence is gone (it must reconnect). A user whose role was taken
    away meanwhile keeps the socket (so leaving still cleans up) but renews nothing.

    `mailbox_role`: the message's mailbox and the user's role in it as the caller has just checked them (a socket's
    batched access check, mailbox.liveaccess, which reads what user_role reads: active account, active mailbox,
    strongest membership); then neither visibility nor permission is asked again here.
    """
    # One timestamp for the heartbeat and the lease renewal: leaving compares the two.
    now = timezone.now()
    if presence_beat(channel_name=channel_name, writing=writing, now=now) is None:
        return False
    if mailbox_role is not None:
        mailbox_id, role = mailbox_role
        if not can(role, Action.PROCESS):  # not a member (any more), or one who may not work on it: nothing renewed
            return True
        held = _HELD.rows(message_id, user.pk)
        if held and held[0][0] == mailbox_id:
            ref = Message.from_db("default", ["id", "mailbox_id"], [message_id, mailbox_id])
            ref.mailbox = _loaded(Mailbox, {"id": mailbox_id, "address": held[0][1]})
            _claim(user=user, message=ref, page="", now=now)
        return True
    # What a renewal needs: the message's mailbox (the permission) and its address (what the claim returns).
    message = (
        Message.objects.visible_to(user)
        .filter(pk=message_id, claimed_by=user)
        .select_related("mailbox")
        .only("pk", "mailbox_id", "mailbox__address")
        .first()
    )
    if message is not None:
        try:
            message_claim(user=user, message=message, now=now)
        except NotAllowed:
            pass
    return True


def _leave_query(message_id: int, user_id: int) -> QuerySet[Message, tuple[Any, ...]]:
    # Two pages of the same message closing at once (two tabs, a page with a doubled socket) must not each see
    # the other still open and both keep the lock: leaves of one message take turns on its row. Only a row whose
    # lock the user holds is locked (and read): a leave without the lock has nothing to release, and nothing can
    # hand this page's user a lock meanwhile that its closing should free (a new claim is a newer page load's).
    # The same statement reads what leaving decides on (the hand-over) and what a release audits.
    return (
        Message.objects.select_for_update(of=("self",))
        .filter(pk=message_id, claimed_by_id=user_id)
        .values_list(*LEAVE_FIELDS)
    )


def _mailbox_query(message_id: int) -> QuerySet[Message, tuple[int]]:
    return Message.objects.filter(pk=message_id).values_list("mailbox_id")


# Every page that closes asks it: compiled once (kimportal.prepared), not per leave.
_LEAVE = PreparedQuery(_leave_query)
_MAILBOX = PreparedQuery(_mailbox_query)


@transaction.atomic
def message_leave(*, user: Any, message_id: int, channel_name: str, mailbox_id: int | None = None) -> bool:
    """A page closed: its presence goes, and the user's lock is released unless another page of theirs
    still has the message open or a newer page load took the lock over. Returns whether it released.

    `mailbox_id`: the message's mailbox as the page's socket knows it (a message never changes mailbox), else
    read when needed."""
    locked = _LEAVE.rows(message_id, user.pk)
    # Whether another page of the user is still open matters only for a lock to release.
    left = presence_leave(channel_name=channel_name, others=bool(locked))
    if left is None:
        return False
    # No visibility check here on purpose: an ex-member's lock must still go when their page closes.
    # A release's message change redraws rows and panels with the presence gone as well: one event, not two.
    if locked and not left.still_open:
        values = dict(zip(LEAVE_FIELDS, locked[0], strict=True))
        message = _leave_message(message_id, values)
        if not handed_over(message, closing_page=left.page_token) and message_release(
            user=user, message=message, reason="left"
        ):
            return True
    if locked:
        mailbox_id = locked[0][0]
    elif mailbox_id is None:
        found = _MAILBOX.rows(message_id)
        if not found:
            return False
        mailbox_id = found[0][0]
    events.broadcast_presence(mailbox_id=mailbox_id, message_id=message_id)
    return False


def _leave_message(message_id: int, values: dict[str, Any]) -> Message:
    """The locked row as a message with only LEAVE_FIELDS loaded (as .only() would give it): what a release audits."""
    fields = [name for name in LEAVE_FIELDS if "__" not in name]
    message = Message.from_db("default", ["id", *fields], [message_id, *(values[name] for name in fields)])
    message.mailbox = Mailbox.from_db("default", ["id", "address"], [values["mailbox_id"], values["mailbox__address"]])
    return message


def handed_over(message: Message, *, closing_page: str) -> bool:
    """Did another page load (a reload, a second tab still connecting) take the lock over?

    A reload's GET re-claims with its own page token before the old page's socket closes; the
    old page must leave the lock alone then. A hand-over older than PAGE_HANDOVER_SECONDS whose
    page never connected does not keep the lock: then the leaving page frees it.
    """
    if not message.claim_page or message.claim_page == closing_page:
        return False
    recent = timezone.now() - timedelta(seconds=PAGE_HANDOVER_SECONDS)
    return bool(message.claim_renewed_at and message.claim_renewed_at > recent)


def claims_release_all(*, user: Any, mailbox_id: int | None = None, reason: str) -> int:
    """Release every lock the user holds (in one mailbox, or everywhere)."""
    qs = Message.objects.filter(claimed_by=user)
    if mailbox_id is not None:
        qs = qs.filter(mailbox_id=mailbox_id)
    return sum(message_release(user=user, message=message, reason=reason) for message in qs)
