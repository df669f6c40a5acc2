"""The Konnektor as the settings describe it: the client's configuration and a physician's call context."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from konnektor import CallContext, KonnektorClient, KonnektorConfig, KonnektorError
from signing.models import SignatureBatch, SignerCard, Workplace

log = logging.getLogger(__name__)


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def konnektor_config() -> KonnektorConfig:
    return KonnektorConfig(
        base_url=settings.KIMPORTAL_KONNEKTOR_URL,
        mode=settings.KIMPORTAL_KONNEKTOR_MODE,
        username=settings.KIMPORTAL_KONNEKTOR_USER,
        password=settings.KIMPORTAL_KONNEKTOR_PASSWORD,
        client_cert_pem=_read(settings.KIMPORTAL_KONNEKTOR_CLIENT_CERT),
        client_key_pem=_read(settings.KIMPORTAL_KONNEKTOR_CLIENT_KEY),
        ca_pem=_read(settings.KIMPORTAL_KONNEKTOR_CA),
        timeout=settings.KIMPORTAL_KONNEKTOR_TIMEOUT,
        sign_timeout=settings.KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT,
        max_requests_per_call=settings.KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL,
        max_document_bytes=settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES,
        max_call_bytes=settings.KIMPORTAL_KONNEKTOR_MAX_CALL_BYTES,
    )


def konnektor_client() -> KonnektorClient:
    return KonnektorClient(konnektor_config())


def call_context(*, workplace: Workplace, card: SignerCard | None) -> CallContext:
    """Mandant and client system from the settings; the physician's own workstation; the physician's stable
    UserId for HBA calls (QES needs one)."""
    return CallContext(
        mandant_id=settings.KIMPORTAL_KONNEKTOR_MANDANT,
        client_system_id=settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM,
        workplace_id=workplace.workplace_id,
        user_id=str(card.konnektor_user_id) if card is not None else None,
    )


def qes_ca_pem() -> bytes | None:
    """The trust anchor(s) for eHBA QES certificates (PEM, one or more), or None when not configured."""
    return _read(settings.KIMPORTAL_KONNEKTOR_QES_CA)


def signature_job_stop(client: KonnektorClient, ctx: Any, job_number: str, *, why: str) -> None:
    """StopSignature for a job the portal no longer waits for (a timeout, a cancel, a batch whose worker died): the
    card terminal stops asking for its PIN, no signature is made that nobody uses, and the card is free for the
    next start. Sent with the client's ordinary timeout, never SignDocument's. A Konnektor error is only logged:
    unknown job (4243) means the job has ended already, and whoever called has ended the batch either way."""
    try:
        client.stop_signature(ctx, job_number)
    except KonnektorError as exc:
        log.info("StopSignature %s (%s): %s", job_number, why, exc)


def batch_job_stop(batch: SignatureBatch, *, why: str, card: SignerCard | None = None) -> None:
    """StopSignature for the batch's last job number, from outside its worker (the job number is stored before
    SignDocument is sent: a batch without one has no job at the Konnektor that could ask for a PIN). ``card``:
    the mapping the batch ran with, when it is no longer stored (its UserId goes into the context)."""
    if not batch.job_number:
        return
    card = card or SignerCard.objects.filter(user_id=batch.signer_id).first()
    with konnektor_client() as client:
        signature_job_stop(client, call_context(workplace=batch.workplace, card=card), batch.job_number, why=why)
