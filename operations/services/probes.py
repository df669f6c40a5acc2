"""The network half of the checks: each probe talks to one system with a short timeout and returns what it saw.

No ORM here: the probes run in a thread pool (operations.services.health) and get everything they need as
arguments, so a test's transaction and the pool's threads never need to share a database connection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from cryptography import x509
from django.utils.translation import gettext_noop as N_

from directory.clients.vzd import VzdClient, VzdConfig, VzdError
from directory.selectors import unavailable_message
from konnektor import CallContext, KonnektorClient, KonnektorConfig, KonnektorError
from konnektor.types import Card, PinStatus
from mailbox.clients.pop3 import pop3_login_check
from mailbox.clients.tls import CmAuthFailed, CmError, Endpoint
from mailbox.services.accounts import cm_error_text
from operations.clients.tlsprobe import ProbeError, pop3_server_certificate
from operations.services.results import ERROR, OK, Msg

# --- Clientmodul ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginProbe:
    state: str
    text: Msg
    auth_failed: bool = False


def probe_cm_login(endpoint: Endpoint) -> LoginProbe:
    """POP3 login, STAT and QUIT: the credentials, the TLS setup and the CM's answer — nothing is fetched."""
    try:
        count = pop3_login_check(endpoint)
    except CmError as exc:
        text = cm_error_text(exc, host=endpoint.host, port=endpoint.port)
        return LoginProbe(ERROR, Msg.raw(text), auth_failed=isinstance(exc, CmAuthFailed))
    return LoginProbe(OK, Msg.of(N_("POP3-Anmeldung erfolgreich (%(count)d Nachricht(en) bereit)."), count=count))


@dataclass(frozen=True)
class CertificateProbe:
    not_after: dt.datetime | None
    subject: str = ""
    error: str = ""


def certificate_dates(der: bytes) -> CertificateProbe:
    cert = x509.load_der_x509_certificate(der)
    return CertificateProbe(cert.not_valid_after_utc, cert.subject.rfc4514_string())


def probe_cm_certificate(host: str, port: int, *, starttls: bool, timeout: float) -> CertificateProbe:
    try:
        der = pop3_server_certificate(host, port, starttls=starttls, timeout=timeout)
        return certificate_dates(der)
    except (ProbeError, ValueError) as exc:
        return CertificateProbe(None, error=str(exc))


# --- Konnektor -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardProbe:
    card: Card
    pin: PinStatus | None = None
    pin_error: str = ""
    certificate: CertificateProbe | None = None


@dataclass
class KonnektorProbe:
    error: str = ""  # discovery failed: the Konnektor is not usable at all
    product_name: str = ""
    product_version: str = ""
    vendor: str = ""
    cards: list[CardProbe] = field(default_factory=list)
    card_errors: list[str] = field(default_factory=list)  # GetCards failed for a workplace


# GetCards' group types: every SMC-B/HSM-B, and every kind of health professional card.
SMCB_TYPES = ("SMC-B", "HSM-B")


def probe_konnektor(
    config: KonnektorConfig, *, mandant_id: str, client_system_id: str, workplaces: list[str], timeout: float
) -> KonnektorProbe:
    """connector.sds (reachable? which product and version?), then per workplace the SMC-Bs and eHBAs with their
    PIN status and certificate. One client, calls one after another: a Konnektor is not to be hammered."""
    result = KonnektorProbe()
    client = KonnektorClient(replace(config, timeout=timeout))
    try:
        try:
            directory = client.discover(refresh=True)
        except KonnektorError as exc:
            result.error = exc.text
            return result
        result.product_name = directory.product_name
        result.product_version = directory.product_version
        result.vendor = directory.vendor_name
        seen: dict[str, tuple[Card, CallContext]] = {}
        for workplace in workplaces:
            ctx = CallContext(mandant_id=mandant_id, client_system_id=client_system_id, workplace_id=workplace)
            for group in ("SM-B", "HBAx"):
                try:
                    cards = client.get_cards(ctx, group)
                except KonnektorError as exc:
                    result.card_errors.append(f"{workplace}: {exc.text}")
                    if exc.kind in ("unreachable", "timeout"):
                        return result
                    continue
                for card in cards:
                    seen.setdefault(card.iccsn or card.card_handle, (card, ctx))
        for card, ctx in seen.values():
            result.cards.append(_probe_card(client, ctx, card))
        return result
    finally:
        client.close()


def _probe_card(client: KonnektorClient, ctx: CallContext, card: Card) -> CardProbe:
    smcb = card.card_type in SMCB_TYPES
    pin: PinStatus | None = None
    pin_error = ""
    try:
        pin = client.get_pin_status(ctx, card.card_handle, "PIN.SMC" if smcb else "PIN.QES")
    except KonnektorError as exc:
        pin_error = exc.text
    try:
        if smcb:
            der = _smcb_certificate(client, ctx, card.card_handle)
        else:
            der = client.read_qes_certificate(ctx, card.card_handle)
        certificate = certificate_dates(der)
    except KonnektorError as exc:
        certificate = CertificateProbe(None, error=exc.text)
    except (NotImplementedError, ValueError) as exc:
        certificate = CertificateProbe(None, error=str(exc) or exc.__class__.__name__)
    return CardProbe(card, pin, pin_error, certificate)


def _smcb_certificate(client: KonnektorClient, ctx: CallContext, card_handle: str) -> bytes:
    """C.AUT, ECC first (G2.1 cards; what the KIM and the Account Manager use), RSA on cards without ECC keys."""
    try:
        return client.read_card_certificate(ctx, card_handle, "C.AUT", "ECC")
    except KonnektorError as exc:
        if exc.code not in (4258, 4149):
            raise
        return client.read_card_certificate(ctx, card_handle, "C.AUT", "RSA")


# --- Directory (VZD) ----------------------------------------------------------------------------------------


def probe_directory(config: VzdConfig, *, timeout: float) -> str:
    """ "" when the directory answered an (empty, indexed) search; else why not."""
    client = VzdClient(
        replace(
            config,
            connect_timeout=min(config.connect_timeout, timeout),
            search_timeout=min(config.search_timeout, timeout),
            pool_size=1,
        )
    )
    try:
        client.search("(uid=kimportal-health-check)", ["uid"])
    except VzdError as exc:
        return unavailable_message(exc)
    finally:
        client.close()
    return ""
