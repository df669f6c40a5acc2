"""A signed letter leaves through the outbox (KIMPORTAL_SIGNING_AUTO_SEND): the send path's own compose and
send services, with the letter's author as sender (they chose the sending mailbox and may send from it) — or its
signer, when the author can no longer send from it.

PAdES: the signed PDF is the attachment. CAdES: the document and its detached signature (`.p7s`) side by side.
The outbox's pre-flight runs as for any mail; when it refuses (a recipient without a certificate, the directory
down), the message stays a draft in the author's outbox with the reason, and the letter says so.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from kimportal.errors import PortalError
from kimportal.texts import N_, StoredText
from mailbox.permissions import Action, can, user_role
from mailbox.services.compose import DEFAULT_DIENSTKENNUNG, OutgoingData, outgoing_attachment_add, outgoing_draft_save
from mailbox.services.outbox import outgoing_send
from mailbox.storage import BlobError, blob_get
from signing.doctypes import document_type
from signing.models import Draft, Signature
from signing.services.audit import signing_audit
from signing.texts import outside_stored

log = logging.getLogger(__name__)


def signed_draft_send(*, draft_id: int) -> Draft:
    """Hand the signed letter to the outbox once; returns the draft as it is afterwards."""
    refused = StoredText([])
    with transaction.atomic():
        draft = Draft.objects.select_for_update(of=("self",)).select_related("author", "signer").get(pk=draft_id)
        if draft.state != Draft.State.SIGNED or draft.outgoing_id is not None:
            return draft  # not signed (any more), or handed over already: never twice
        signature = (
            draft.signatures.filter(verified_at__isnull=False, verification_error="", document_version=draft.version)
            .order_by("-signed_at")
            .first()
        )
        if signature is None:
            return draft
        kind = document_type(draft.document_type)
        data = OutgoingData(
            subject=draft.subject,
            body=draft.body,
            to=list(draft.recipients),
            dienstkennung=kind.dienstkennung if kind else DEFAULT_DIENSTKENNUNG,
        )
        sender = _sender(draft)
        try:
            outgoing = outgoing_draft_save(user=sender, mailbox_id=draft.mailbox_id, data=data)
            for filename, content, content_type in _attachments(draft, signature):
                outgoing_attachment_add(
                    user=sender, draft=outgoing, filename=filename, content=content, content_type=content_type
                )
        except (PortalError, BlobError) as exc:
            transaction.set_rollback(True)
            if isinstance(exc, PortalError):
                refused = outside_stored(exc.message)
            else:
                log.error("signed draft %s: blob missing or damaged: %s", draft_id, exc)
                refused = N_("Das Dokument oder seine Signatur fehlt im Speicher oder ist beschädigt.")
        else:
            Draft.objects.filter(pk=draft.pk).update(outgoing=outgoing, updated_at=timezone.now())
    if refused:
        # Written after the rollback: inside the block marked for it, no query runs (the reason would be lost).
        return _note(draft_id, N_("Nicht an den Postausgang übergeben: %(reason)s") % {"reason": refused})
    try:
        outgoing_send(user=sender, draft=outgoing, version=None)
    except PortalError as exc:
        # The pre-flight refused: the message waits as a draft in the sender's outbox, with the reason.
        return _note(
            draft_id,
            N_("Der signierte Brief liegt als Entwurf im Postausgang: %(reason)s")
            % {"reason": outside_stored(exc.message)},
        )
    Draft.objects.filter(pk=draft_id).update(state=Draft.State.SENT, last_error="", updated_at=timezone.now())
    signing_audit(actor=None, action="signing.handed_to_outbox", draft=draft, outgoing=outgoing.pk, sender=sender.pk)
    return Draft.objects.get(pk=draft_id)


def _sender(draft: Draft) -> Any:
    """The author sends the signed letter; one who can no longer send from its mailbox (left the department, lost
    the role, deactivated) leaves it to its signer, who needed that right to sign it. Else the author (refused, with
    the reason on the letter)."""
    for user in (draft.author, draft.signer):
        if user.is_active and can(user_role(user, draft.mailbox_id), Action.PROCESS):
            return user
    return draft.author


def _attachments(draft: Draft, signature: Signature) -> list[tuple[str, bytes, str]]:
    if signature.format == Signature.Format.PADES:
        return [(draft.filename, blob_get(signature.sha256), "application/pdf")]
    return [
        (draft.filename, blob_get(draft.sha256), draft.mime_type),
        (f"{draft.filename}.p7s", blob_get(signature.sha256), "application/pkcs7-signature"),
    ]


def _note(draft_id: int, text: StoredText) -> Draft:
    log.info("signed draft %s not sent: %s", draft_id, text.stored)
    # Kept untranslated (kimportal.texts): the queue shows it in the reader's language.
    Draft.objects.filter(pk=draft_id).update(last_error=text.stored, updated_at=timezone.now())
    return Draft.objects.get(pk=draft_id)
