"""Drafts: created and changed by their author (or the signer) until they are signed; every change is a new
version, every look at the document is audited, and the signer learns of new work at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kimportal.errors import Conflict, NotAllowed, PortalError
from mailbox import events as mailbox_events
from mailbox.models import Mailbox, Notification
from mailbox.permissions import Action, require
from mailbox.storage import blob_put
from signing import events
from signing.models import Draft, DraftVersion, SignerCard
from signing.permissions import SIGNER_NOT_ALLOWED, may_sign_for, require_edit
from signing.services.audit import signing_audit
from signing.services.documents import CheckedDocument
from signing.services.review import review_required, review_start

# Notification.kind of "a draft waits for your signature"; the text is stored in German (Notification.text).
NOTIFICATION_KIND = Notification.Kind.SIGNING_QUEUED


@dataclass(frozen=True)
class DraftData:
    """A draft's metadata as the form (or, with issue 12, the KIS API) parsed it."""

    document_type: str
    patient_reference: str
    signer: Any
    mailbox: Mailbox
    subject: str
    body: str = ""
    recipients: list[str] = field(default_factory=list)


def _check(author: Any, data: DraftData) -> None:
    require(author, data.mailbox, Action.PROCESS, _("Aus diesem Postfach dürfen Sie nicht senden."))
    if not data.signer.is_active or not SignerCard.objects.filter(user=data.signer).exists():
        raise PortalError(_("Die gewählte Person hat keinen eHBA und kann nicht signieren."))
    # Not every eHBA holder signs for every department: only a member who may send from the draft's mailbox.
    if not may_sign_for(data.signer, data.mailbox.pk):
        name = data.signer.get_full_name() or data.signer.get_username()
        raise PortalError(SIGNER_NOT_ALLOWED % {"name": name, "mailbox": data.mailbox.display_name})


def _notify_signer(*, draft: Draft, actor: Any) -> None:
    if draft.signer_id == actor.pk:
        return
    # Rendered in the signer's language when shown (Notification.TEXTS); `text` is the German fallback.
    params = {
        "name": actor.get_full_name() or actor.get_username(),
        "subject": draft.subject,
        "patient": draft.patient_reference,
        # mailbox_id: shown only while the signer is a member of the draft's mailbox (mailbox.selectors).
        "draft": draft.pk,
        "mailbox_id": draft.mailbox_id,
    }
    with translation.override("de"):
        text = Notification(kind=Notification.Kind.SIGNING_QUEUED, params=params).display_text
    Notification.objects.create(
        user_id=draft.signer_id,
        kind=Notification.Kind.SIGNING_QUEUED,
        actor=actor,
        params=params,
        text=text[:500],
    )
    mailbox_events.broadcast_user_notification(user_id=draft.signer_id)


# The fields of a draft a version records; a change of any of them is a new version.
VERSION_FIELDS = (
    "document_type",
    "patient_reference",
    "signer_id",
    "mailbox_id",
    "recipients",
    "subject",
    "body",
    "filename",
    "mime_type",
    "size",
    "sha256",
)


def _record_version(*, draft: Draft, user: Any, via: str, changed: list[str], comment: str = "") -> DraftVersion:
    return DraftVersion.objects.create(
        draft=draft,
        number=draft.version,
        created_by=user,
        via=via,
        created_at=draft.updated_at,
        changed=changed,
        comment=comment[:2000],
        **{name: getattr(draft, name) for name in VERSION_FIELDS},
    )


@transaction.atomic
def draft_create(
    *,
    author: Any,
    data: DraftData,
    document: CheckedDocument,
    source: str = Draft.Source.PORTAL,
    external_id: str = "",
    via: str = "",
    reviewer: Any = None,
) -> Draft:
    """A new draft, recorded as version 1. Where the sending department has this document type reviewed (or a
    reviewer is named), it starts "in Prüfung" and its reviewer is asked; else the signer is asked to sign.
    `via` names a non-human channel (e.g. "KIS: <client>") for the audit and the version history."""
    _check(author, data)
    # The blob first: it is named by its content, so a rolled-back row leaves at most an unused file, never a
    # row without its document.
    digest = blob_put(document.content)
    now = timezone.now()
    draft = Draft.objects.create(
        document_type=data.document_type,
        patient_reference=data.patient_reference,
        author=author,
        signer=data.signer,
        recipients=list(data.recipients),
        subject=data.subject,
        body=data.body,
        mailbox=data.mailbox,
        filename=document.filename,
        mime_type=document.mime_type,
        size=len(document.content),
        sha256=digest,
        source=source,
        external_id=external_id,
        created_at=now,
        updated_at=now,
    )
    _record_version(draft=draft, user=author, via=via, changed=[])
    signing_audit(
        actor=author,
        action="signing.draft_created",
        draft=draft,
        sha256=digest,
        signer=data.signer.pk,
        **({"via": via} if via else {}),
    )
    if reviewer is not None or review_required(draft.mailbox_id, draft.document_type):
        review_start(draft=draft, actor=author, via=via, reviewer=reviewer)
    else:
        _notify_signer(draft=draft, actor=author)
    events.broadcast_drafts_changed(user_ids=[author.pk, draft.signer_id], draft_ids=[draft.pk])
    return draft


@transaction.atomic
def draft_update(
    *,
    user: Any,
    draft: Draft,
    version: int,
    data: DraftData,
    document: CheckedDocument | None = None,
    via: str = "",
    comment: str = "",
) -> Draft:
    """Change metadata and, optionally, the document: a new version (who, when, which fields). Refused once a
    batch signs it, it is signed or withdrawn, and when someone else changed it since the user loaded it. A
    draft under review (or one its department now has reviewed) goes (back) to review: an approval holds for
    exactly the version approved."""
    current = Draft.objects.select_for_update().get(pk=draft.pk)
    require_edit(user, current)
    if not current.is_open:
        raise NotAllowed(
            _("Der Entwurf wird gerade signiert, ist signiert oder zurückgezogen und kann nicht mehr geändert werden.")
        )
    if current.version != version:
        raise Conflict(
            _("Der Entwurf wurde inzwischen geändert. Bitte prüfen Sie die aktuelle Fassung."), fresh=current
        )
    _check(user, data)
    old_signer = current.signer_id
    changes: dict[str, Any] = {}
    for name in ("document_type", "patient_reference", "subject", "body", "recipients"):
        value = getattr(data, name)
        if getattr(current, name) != value:
            changes[name] = value
    if current.signer_id != data.signer.pk:
        changes["signer"] = data.signer
    if current.mailbox_id != data.mailbox.pk:
        changes["mailbox"] = data.mailbox
    if document is not None:
        digest = blob_put(document.content)
        new = {"filename": document.filename, "mime_type": document.mime_type, "size": len(document.content)}
        changes.update({name: value for name, value in new.items() if getattr(current, name) != value})
        if digest != current.sha256:
            changes["sha256"] = digest
    if not changes:
        return current
    for name, value in changes.items():
        setattr(current, name, value)
    current.version += 1
    current.updated_at = timezone.now()
    current.state = Draft.State.DRAFT
    current.last_error, current.last_error_code = "", None
    current.save()
    changed = sorted(changes)
    _record_version(draft=current, user=user, via=via, changed=changed, comment=comment)
    signing_audit(
        actor=user,
        action="signing.draft_changed",
        draft=current,
        version=current.version,
        fields=changed,
        **({"signer": current.signer_id} if "signer" in changes else {}),
        **({"via": via} if via else {}),
    )
    if current.review_state != Draft.Review.NONE or review_required(current.mailbox_id, current.document_type):
        review_start(draft=current, actor=user, via=via, comment=comment)
    elif current.signer_id != old_signer:
        _notify_signer(draft=current, actor=user)
    events.broadcast_drafts_changed(user_ids=[current.author_id, current.signer_id, old_signer], draft_ids=[current.pk])
    return current


def withdrawal_record(*, user: Any, draft: Draft, reason: str, **details: Any) -> None:
    """Write a withdrawal: the state, and one "signing.draft_withdrawn" event with the caller's own *details* after
    the reason. Shared by the author's way (draft_withdraw) and the owner's way for an orphaned draft
    (signing.services.orphans.orphan_withdraw), so both leave the same trail; the caller has locked the draft and
    checked who may withdraw it and that it is still open, and tells whoever is on it."""
    draft.state = Draft.State.WITHDRAWN
    draft.updated_at = timezone.now()
    draft.save(update_fields=["state", "updated_at"])
    signing_audit(
        actor=user,
        action="signing.draft_withdrawn",
        draft=draft,
        version=draft.version,
        reason=reason[:500],
        **details,
    )


@transaction.atomic
def draft_withdraw(*, user: Any, draft: Draft, via: str = "", reason: str = "") -> Draft:
    """Take a draft back before it is signed: it leaves the queue (and the review), its history stays. Refused
    once a batch signs it or it is signed; withdrawing it again changes nothing."""
    current = Draft.objects.select_for_update().get(pk=draft.pk)
    require_edit(user, current)
    if current.state == Draft.State.WITHDRAWN:
        return current
    if not current.is_open:
        raise NotAllowed(_("Der Entwurf wird gerade signiert oder ist signiert und kann nicht zurückgezogen werden."))
    withdrawal_record(user=user, draft=current, reason=reason, **({"via": via} if via else {}))
    ids = [current.author_id, current.signer_id] + ([current.reviewer_id] if current.reviewer_id else [])
    events.broadcast_drafts_changed(user_ids=ids, draft_ids=[current.pk])
    return current


@transaction.atomic
def draft_document_viewed(*, user: Any, draft: Draft, version: int | None = None, download: bool = False) -> None:
    """Someone looked at a draft's document (or its signed result): patient data, so always on the trail."""
    signing_audit(
        actor=user,
        action="signing.document_viewed",
        draft=draft,
        version=version if version is not None else draft.version,
        download=download,
    )
