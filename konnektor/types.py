"""The values the client takes and returns: plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

MODES = ("plain", "basic", "cert")

# Signature types of SignDocument's dss:SignatureType (gemSpec_Kon TAB_KON_583).
CADES = "urn:ietf:rfc:5652"
PADES = "http://uri.etsi.org/02778/3"


@dataclass(frozen=True)
class KonnektorConfig:
    """How to reach the Konnektor.

    ``mode``: ``plain`` (HTTP, "Ungesichert"), ``basic`` (HTTPS + Basic auth, "Login"), ``cert`` (HTTPS + client
    certificate, "Zertifikat"). ``ca_pem`` is the trust anchor for HTTPS; with it the server's certificate is checked
    against that CA only and its host name is not (a Konnektor's certificate names its card, not its host); without
    it the system store and the host name are checked. Timeouts are in seconds: ``timeout`` for every operation
    and the connect, ``sign_timeout`` for SignDocument, which waits for the PIN at the card terminal.
    ``crypt`` is SignDocument's Crypt (``RSA_ECC``: ECC on G2.1 cards, else RSA).
    """

    base_url: str
    mode: str = "plain"
    username: str = ""
    password: str = field(default="", repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    timeout: float = 30.0
    sign_timeout: float = 600.0
    max_requests_per_call: int = 50
    max_document_bytes: int = 25 * 2**20
    max_call_bytes: int = 250 * 2**20
    crypt: str = "RSA_ECC"


@dataclass(frozen=True)
class CallContext:
    """The Konnektor's call context (CCTX:Context). ``user_id`` is required for the eHBA's QES: one stable, opaque
    id per physician (not the login name)."""

    mandant_id: str
    client_system_id: str
    workplace_id: str
    user_id: str | None = None


@dataclass(frozen=True)
class ServiceDirectory:
    """What connector.sds announced. ``services`` maps a service name to the chosen (version, endpoint URL): per
    service the highest version the portal supports, with that version's endpoint. ``offered`` lists every
    announced version per service (for error messages and the operations page)."""

    product_name: str
    product_version: str
    services: dict[str, tuple[str, str]]
    vendor_name: str = ""
    product_type_version: str = ""
    tls_mandatory: bool | None = None
    client_auth_mandatory: bool | None = None
    offered: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Card:
    """A card GetCards listed. ``certificate_expires``: the end of validity the Konnektor reports for the card's
    certificate (CertificateExpirationDate; for an SMC-B its C.AUT), None if it reports none."""

    card_handle: str
    card_type: str
    iccsn: str | None
    ct_id: str
    slot_id: int
    holder_name: str | None
    certificate_expires: date | None = None


@dataclass(frozen=True)
class PinStatus:
    """``status``: VERIFIED, TRANSPORT_PIN, EMPTY_PIN, BLOCKED, VERIFIABLE or DISABLED."""

    status: str
    left_tries: int | None


@dataclass(frozen=True)
class PinResult:
    """VerifyPin's answer. ``result``: OK, REJECTED, ERROR, WASBLOCKED, NOWBLOCKED or TRANSPORT_PIN."""

    result: str
    left_tries: int | None


@dataclass(frozen=True)
class SignItem:
    """One document to sign. ``request_id`` matches the result (unique within a call); ``short_text`` names the
    document inside the signature (the client reduces it to the 30 allowed characters); ``pades`` asks for the
    signed PDF (PAdES) instead of a detached CAdES signature."""

    request_id: str
    content: bytes = field(repr=False)
    mime_type: str
    short_text: str
    pades: bool = False


@dataclass(frozen=True)
class SignResult:
    """The outcome for one SignItem. ``signature``: the detached CMS (DER) for CAdES; ``signed_document``: the
    signed PDF for PAdES. ``code``/``text``: the gematik code and its German text when the Konnektor reported one
    for this document (a warning on a signed document, or why it was not signed)."""

    request_id: str
    ok: bool
    signature: bytes | None = field(default=None, repr=False)
    signed_document: bytes | None = field(default=None, repr=False)
    code: int | None = None
    text: str = ""


@dataclass(frozen=True)
class BatchPlan:
    """``batches()``'s answer: the SignDocument calls to make (each within the limits, one signature type each)
    and the results of the items no call may carry (too big: 4283)."""

    calls: list[list[SignItem]]
    rejected: list[SignResult]


# Certificate references of ReadCardCertificate (CertificateService 6.0) and the key algorithms (Crypt).
CERT_REFS = ("C.AUT", "C.ENC", "C.SIG", "C.QES")
CRYPTS = ("RSA", "ECC")

# VerifyDocument's HighLevelResult (SignatureService 7.5, vr:VerificationResult).
VALID = "VALID"
INVALID = "INVALID"
INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class VerifyResult:
    """VerifyDocument's answer for one signature.

    ``result``: ``VALID``, ``INVALID`` or ``INCONCLUSIVE`` as the Konnektor's HighLevelResult says; ``valid`` is
    True only for VALID. ``reason``: German, for the user, empty when valid. ``signer_name``: the CN of the
    signer's certificate ("" if unknown); ``signer_certificate``: its DER; ``signing_time``: the signed signing
    time (aware, UTC); ``is_qes``: the signature is a qualified one (a QES certificate of the TI)."""

    valid: bool
    result: str
    reason: str = ""
    signer_name: str = ""
    signer_certificate: bytes | None = field(default=None, repr=False)
    signing_time: datetime | None = None
    is_qes: bool = False


@dataclass(frozen=True)
class SignatureMode:
    """GetSignatureMode's answer for (card, user). ``comfort_active``: a Komfortsignatur session of this UserId is
    open; ``remaining_count``/``valid_until``: what is left of it (None without a session). ``comfort_enabled``:
    the Konnektor's administrator allows the Komfortsignatur at all; ``comfort_max``/``comfort_timer``: the
    Konnektor's limits per activation."""

    comfort_active: bool
    remaining_count: int | None = None
    valid_until: datetime | None = None
    comfort_enabled: bool = False
    comfort_max: int | None = None
    comfort_timer: timedelta | None = None
