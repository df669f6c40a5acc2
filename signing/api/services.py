"""The KIS API's writes: client systems and their tokens (managed by managers, audited), and drafts submitted,
replaced and withdrawn by a client (through the draft services, with the client as the channel `via`).

Every use of the API with a valid token is on the audit trail with the client's name: what it did, or why it was
refused."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.services import event_record
from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.jobs import enqueue_on_commit
from mailbox.crypto import encrypt
from signing.api import tokens
from signing.api.errors import ApiError
from signing.api.validation import Submission
from signing.models import Draft, KisClient, KisDraft, KisToken
from signing.services.audit import signing_audit
from signing.services.drafts import draft_create, draft_update, draft_withdraw

# A token's last use is written at most this often (not one write per call).
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Final states: nothing more to announce once the callback said so.
FINAL_STATES = ("sent", "withdrawn")


@dataclass(frozen=True)
class Caller:
    """Who calls: the client system and the token it used."""

    client: KisClient
    token: KisToken

    @property
    def via(self) -> str:
        return f"KIS: {self.client.name}"

    def audit_details(self) -> dict[str, Any]:
        return {"client": self.client.name, "client_id": self.client.pk, "token": self.token.prefix}


# --- client systems and tokens (the managers' page and the admin) ------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A token (and, for a new client, its callback secret) in clear: shown once, never stored."""

    client: KisClient
    token: str
    secret: str = ""
    expires_at: dt.datetime | None = None


def _client_audit(*, manager: Any, action: str, client: KisClient, **details: Any) -> None:
    event_record(actor=manager, action=action, details={"client": client.name, "client_id": client.pk, **details})


@transaction.atomic
def kis_client_create(
    *, manager: Any, name: str, mailboxes: list[Any], callback_url: str = "", token_days: int | None = None
) -> Issued:
    """A new client system with its first token (valid for `token_days`, tokens.LIFETIMES_DAYS; the configured
    default when None) and callback secret."""
    if KisClient.objects.filter(name__iexact=name).exists():
        raise PortalError(_("Eine KIS-Anbindung mit diesem Namen gibt es schon."))
    secret = tokens.secret_new()
    client = KisClient.objects.create(
        name=name, callback_url=callback_url, callback_secret=encrypt(secret), created_by=manager
    )
    client.mailboxes.set(mailboxes)
    _client_audit(
        manager=manager,
        action="signing.kis_client_created",
        client=client,
        mailboxes=sorted(m.address for m in mailboxes),
        callback_url=callback_url,
    )
    issued = kis_token_issue(manager=manager, client=client, days=token_days)
    return Issued(client=client, token=issued.token, secret=secret, expires_at=issued.expires_at)


@transaction.atomic
def kis_client_update(
    *, manager: Any, client: KisClient, mailboxes: list[Any], callback_url: str, is_active: bool
) -> KisClient:
    current = KisClient.objects.select_for_update().get(pk=client.pk)
    before = sorted(current.mailboxes.values_list("address", flat=True))
    after = sorted(m.address for m in mailboxes)
    changes: dict[str, Any] = {}
    if before != after:
        changes["mailboxes"] = after
    if current.callback_url != callback_url:
        changes["callback_url"] = callback_url
    if current.is_active != is_active:
        changes["is_active"] = is_active
    if not changes:
        return current
    current.callback_url, current.is_active = callback_url, is_active
    current.save(update_fields=["callback_url", "is_active"])
    current.mailboxes.set(mailboxes)
    _client_audit(manager=manager, action="signing.kis_client_changed", client=current, **changes)
    return current


@transaction.atomic
def kis_callback_secret_renew(*, manager: Any, client: KisClient) -> str:
    secret = tokens.secret_new()
    KisClient.objects.filter(pk=client.pk).update(callback_secret=encrypt(secret))
    _client_audit(manager=manager, action="signing.kis_secret_renewed", client=client)
    return secret


@transaction.atomic
def kis_token_issue(*, manager: Any, client: KisClient, days: int | None = None) -> Issued:
    """A new token for the client, valid for `days` (one of tokens.LIFETIMES_DAYS; the configured default when
    None). The client's other tokens stay valid: the KIS switches over, then the old one is revoked."""
    token = tokens.token_new()
    now = timezone.now()
    row = KisToken.objects.create(
        client=client,
        token_hash=tokens.token_hash(token),
        prefix=tokens.token_shown(token),
        created_by=manager,
        created_at=now,
        expires_at=now + tokens.lifetime(days),
    )
    _client_audit(
        manager=manager,
        action="signing.kis_token_issued",
        client=client,
        token=row.prefix,
        expires_at=row.expires_at.isoformat(),
    )
    return Issued(client=client, token=token, expires_at=row.expires_at)


@transaction.atomic
def kis_token_revoke(*, manager: Any, token: KisToken) -> KisToken:
    current = KisToken.objects.select_for_update().select_related("client").get(pk=token.pk)
    if current.revoked_at is not None:
        return current
    current.revoked_at, current.revoked_by = timezone.now(), manager
    current.save(update_fields=["revoked_at", "revoked_by"])
    _client_audit(manager=manager, action="signing.kis_token_revoked", client=current.client, token=current.prefix)
    return current


def kis_token_used(token: KisToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        KisToken.objects.filter(pk=token.pk).update(last_used_at=now)


# --- drafts from a client ------------------------------------------------------------------------------------------


def _announce_soon() -> None:
    """A change the API made (or saw) is announced by the next sweep; this one runs right after the commit."""
    enqueue_on_commit("signing.tasks.kis_callbacks_due")


def _snapshot(link: KisDraft, draft: Draft) -> None:
    """What the response told the client needs no callback: only later changes are announced."""
    link.announced_state, link.announced_review, link.announced_version = (
        draft.state,
        draft.review_state,
        draft.version,
    )
    link.finished = draft.state in FINAL_STATES
    link.save(update_fields=["announced_state", "announced_review", "announced_version", "finished"])


def external_id(client: KisClient, document_id: str) -> str:
    """Draft.external_id is unique per source: the client's id in front keeps two KIS with the same numbers apart."""
    return f"{client.pk}:{document_id}"


def kis_draft_submit(*, caller: Caller, submission: Submission) -> tuple[KisDraft, bool]:
    """The draft for this submission and whether it was created now. The same submission again (a retry after a
    lost answer) finds the draft made the first time; other content under the same document id is refused."""
    existing = _existing(caller.client, submission.document_id)
    if existing is not None:
        return _replayed(caller, existing, submission), False
    try:
        return _create(caller, submission), True
    except IntegrityError:
        # The same id submitted twice at once: the other request won; this one is a replay of it (or a conflict).
        existing = _existing(caller.client, submission.document_id)
        if existing is None:
            raise
        return _replayed(caller, existing, submission), False


def _existing(client: KisClient, document_id: str) -> KisDraft | None:
    return (
        KisDraft.objects.select_related("draft", "draft__author", "draft__signer", "draft__mailbox")
        .filter(client=client, document_id=document_id)
        .first()
    )


@transaction.atomic
def _create(caller: Caller, submission: Submission) -> KisDraft:
    draft = draft_create(
        author=submission.author,
        data=submission.data,
        document=submission.document,
        source=Draft.Source.KIS,
        external_id=external_id(caller.client, submission.document_id),
        via=caller.via,
    )
    link = KisDraft.objects.create(
        client=caller.client, draft=draft, document_id=submission.document_id, submission_digest=submission.digest
    )
    _snapshot(link, draft)
    signing_audit(
        actor=None,
        action="signing.kis_draft_submitted",
        draft=draft,
        document_id=submission.document_id,
        **caller.audit_details(),
    )
    return link


@transaction.atomic
def _replayed(caller: Caller, link: KisDraft, submission: Submission) -> KisDraft:
    # A draft moved out of the caller's scope is not shown (as GET does not find it): its id stays taken.
    in_scope = caller.client.mailboxes.filter(pk=link.draft.mailbox_id).exists()
    if link.submission_digest != submission.digest or not in_scope:
        raise ApiError(
            409,
            "document_id_conflict",
            _(
                "Unter der Dokument-ID „%(id)s“ liegt bereits ein anderer Entwurf vor. Eine neue Fassung wird mit "
                "PUT /drafts/%(id)s eingereicht (ersetzen)."
            )
            % {"id": submission.document_id},
            field="document_id",
        )
    signing_audit(
        actor=None,
        action="signing.kis_draft_replayed",
        draft=link.draft,
        document_id=link.document_id,
        **caller.audit_details(),
    )
    return link


@transaction.atomic
def kis_draft_replace(
    *, caller: Caller, link: KisDraft, submission: Submission, expected_version: int | None = None
) -> tuple[KisDraft, bool]:
    """A new version (document and metadata) of the client's draft; whether anything changed. The same content
    again changes nothing. Refused once the draft is being signed, is signed or was withdrawn."""
    locked = KisDraft.objects.select_for_update().select_related("draft").get(pk=link.pk)
    draft = Draft.objects.select_for_update().get(pk=locked.draft_id)
    if locked.submission_digest == submission.digest and (expected_version in (None, draft.version)):
        return locked, False
    if submission.author.pk != draft.author_id:
        raise ApiError(
            422,
            "author_mismatch",
            _("Der Verfasser eines Entwurfs bleibt derselbe; eine neue Fassung nennt denselben Verfasser."),
            field="author",
        )
    if not draft.is_open:
        raise _not_editable(draft)
    try:
        updated = draft_update(
            user=draft.author,
            draft=draft,
            version=expected_version if expected_version is not None else draft.version,
            data=submission.data,
            document=submission.document,
            via=caller.via,
            comment=_("Neue Fassung aus dem KIS"),
        )
    except Conflict as exc:
        raise ApiError(409, "version_conflict", exc.message, field="expected_version") from exc
    except NotAllowed as exc:
        raise ApiError(409, "not_editable", exc.message) from exc
    except PortalError as exc:
        raise ApiError(422, "rejected", exc.message) from exc
    locked.submission_digest = submission.digest
    locked.save(update_fields=["submission_digest"])
    _snapshot(locked, updated)
    signing_audit(
        actor=None,
        action="signing.kis_draft_replaced",
        draft=updated,
        document_id=locked.document_id,
        version=updated.version,
        **caller.audit_details(),
    )
    _announce_soon()
    locked.draft = updated
    return locked, True


def _not_editable(draft: Draft) -> ApiError:
    if draft.state == Draft.State.WITHDRAWN:
        return ApiError(409, "withdrawn", _("Der Entwurf wurde zurückgezogen und kann nicht mehr geändert werden."))
    return ApiError(
        409,
        "not_editable",
        _("Der Entwurf wird gerade signiert oder ist signiert und kann nicht mehr geändert werden."),
    )


@transaction.atomic
def kis_draft_withdraw(*, caller: Caller, link: KisDraft, reason: str = "") -> KisDraft:
    """Takes the draft back out of the queue; withdrawing it again changes nothing."""
    locked = KisDraft.objects.select_for_update().get(pk=link.pk)
    draft = Draft.objects.select_for_update().get(pk=locked.draft_id)
    if draft.state != Draft.State.WITHDRAWN:
        if not draft.is_open:
            raise ApiError(
                409,
                "not_withdrawable",
                _("Der Entwurf wird gerade signiert oder ist signiert und kann nicht mehr zurückgezogen werden."),
            )
        try:
            draft = draft_withdraw(user=draft.author, draft=draft, via=caller.via, reason=reason)
        except NotAllowed as exc:
            raise ApiError(409, "not_withdrawable", exc.message) from exc
        signing_audit(
            actor=None,
            action="signing.kis_draft_withdrawn",
            draft=draft,
            document_id=locked.document_id,
            **caller.audit_details(),
        )
        _snapshot(locked, draft)
        _announce_soon()
    locked.draft = draft
    return locked


@transaction.atomic
def kis_draft_read(*, caller: Caller, link: KisDraft, signed: bool = False, version: int | None = None) -> None:
    """The client read the draft's state (its metadata names the patient) or downloaded the signed result."""
    signing_audit(
        actor=None,
        action="signing.kis_signed_downloaded" if signed else "signing.kis_draft_read",
        draft=link.draft,
        document_id=link.document_id,
        **({"version": version} if version is not None else {}),
        **caller.audit_details(),
    )


@transaction.atomic
def kis_request_refused(*, caller: Caller, operation: str, error: ApiError, document_id: str = "") -> None:
    """A call with a valid token that was refused: what was tried and why (no patient data: the request's
    content is not kept)."""
    event_record(
        actor=None,
        action="signing.kis_request_refused",
        details={
            "operation": operation,
            "status": error.status,
            "code": error.code,
            **({"reason": error.reason} if error.reason else {}),
            "document_id": document_id,
            **caller.audit_details(),
        },
    )
