"""The Konnektor as the settings describe it: the client's configuration and a physician's call context."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from konnektor import CallContext, KonnektorClient, KonnektorConfig
from signing.models import SignerCard, Workplace


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
