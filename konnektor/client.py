"""The portal's Konnektor client: discovery, cards, PIN status, certificates, the batch signature, the Komfortsignatur,
VerifyDocument and ExternalAuthenticate (I/O only).

One zeep client per service, built from the package's own WSDL subset (``konnektor/wsdl``) for the version
connector.sds announced, bound to that version's endpoint. Everything coming from the network is parsed with
entities, DTDs and external references refused. Faults, refused logins, TLS failures and timeouts all become a
KonnektorError with a German text (gettext: in the language active when it is raised).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
import zeep
import zeep.exceptions
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from zeep.plugins import Plugin
from zeep.transports import Transport
from zeep.wsdl import Document

from . import messages
from .discovery import parse_sds, parse_version
from .errors import (
    KonnektorError,
    error_from_fault,
    error_text,
    is_error_severity,
    traces_from_object,
)
from .transport import KonnektorTransport, build_session
from .types import (
    CERT_REFS,
    CRYPTS,
    CallContext,
    Card,
    KonnektorConfig,
    PinResult,
    PinStatus,
    ServiceDirectory,
    SignatureMode,
    SignItem,
    SignResult,
    VerifyResult,
)
from .verification import parse_duration, verify_result

WSDL_DIR = Path(__file__).resolve().parent / "wsdl"

# (service, major.minor) → the WSDL of the portal's subset.
WSDL_FILES: dict[tuple[str, tuple[int, int]], str] = {
    ("EventService", (7, 2)): "event-service.subset.wsdl",
    ("CardService", (8, 1)): "card-service.subset.wsdl",
    ("CertificateService", (6, 0)): "certificate-service.subset.wsdl",
    ("SignatureService", (7, 5)): "signature-service-v7-5.subset.wsdl",
    ("SignatureService", (7, 4)): "signature-service-v7-4.subset.wsdl",
    ("AuthSignatureService", (7, 4)): "auth-signature-service.subset.wsdl",
}

# The group types of GetCards' filter (gemSpec_Kon 3.1.2) and the card types they stand for.
CARD_TYPE_GROUPS: dict[str, set[str]] = {"HBAx": {"HBA", "HBA-qSig", "ZOD_2.0"}, "SM-B": {"SMC-B", "HSM-B"}}

# ReadCardCertificate with Crypt ECC on a card without ECC keys (G2.0): 4258, or 4149 on older Konnektors.
NO_ECC_CERTIFICATE = (4258, 4149)

COMFORT_NEEDS_SECURE_MODE = gettext_lazy(
    "Die Komfortsignatur ist nur mit einer gesicherten Verbindung zum Konnektor möglich (Verbindungsart "
    "„Login“ oder „Zertifikat“). Bitte die Verbindungsart in den Konnektor-Einstellungen ändern."
)

# Matched whole (fullmatch): "$" also matches before a final line break.
JOB_NUMBER = re.compile(r"[A-Z]{3}-[0-9]{3}")

NOT_RETURNED = gettext_lazy(
    "Nicht signiert: der Konnektor hat für dieses Dokument kein Ergebnis geliefert "
    "(z. B. PIN-Eingabe abgebrochen oder Vorgang beendet)."
)

_SETTINGS = {
    # Loading our own files: nothing in them needs a DTD, an entity or a network fetch.
    "load": zeep.Settings(strict=True, forbid_entities=True, forbid_external=True, forbid_dtd=True),
    # Answers: the same refusals. SignDocument's answer carries whole signed PDFs (25 MB each → text nodes beyond
    # libxml2's 10 MB default), so its service parses with huge_tree; entities stay unresolved and a DTD refused.
    "default": zeep.Settings(strict=True, forbid_entities=True, forbid_external=True, forbid_dtd=True),
    "huge": zeep.Settings(strict=True, forbid_entities=True, forbid_external=True, forbid_dtd=True, xml_huge_tree=True),
}

_documents: dict[str, Document] = {}
_documents_lock = threading.Lock()

T = TypeVar("T")


def wsdl_document(filename: str) -> Document:
    """The parsed WSDL subset, once per process (parsing costs more than a whole small SOAP call)."""
    with _documents_lock:
        document = _documents.get(filename)
        if document is None:
            # zeep annotates the transport parameter as a class; it takes an instance.
            document = Document(
                str(WSDL_DIR / filename),
                Transport(),  # type: ignore[no-untyped-call,arg-type]
                settings=_SETTINGS["load"],
            )
            _documents[filename] = document
        return document


def binding_name(service: str, major_minor: tuple[int, int]) -> str:
    major, minor = major_minor
    return f"{{http://ws.gematik.de/conn/{service}/WSDL/v{major}.{minor}}}{service}Binding"


class KonnektorClient:
    """Talks to one Konnektor with one configuration. Thread-safe: StopSignature may be sent from another thread
    while SignDocument waits for the PIN."""

    def __init__(self, config: KonnektorConfig, *, plugins: Sequence[Plugin] = ()) -> None:
        self.config = config
        self._plugins = list(plugins)
        self._session = build_session(config)
        self._transport = KonnektorTransport(self._session, timeout=config.timeout, sign_timeout=config.sign_timeout)
        self._lock = threading.Lock()
        self._directory: ServiceDirectory | None = None
        self._services: dict[str, tuple[Any, tuple[int, int, int]]] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KonnektorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery -----------------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        return self.config.mode != "plain" or self.config.base_url.lower().startswith("https:")

    def discover(self, *, refresh: bool = False) -> ServiceDirectory:
        """Read connector.sds (cached; re-read after a connection error, as gemILF_PS asks)."""
        with self._lock:
            if self._directory is not None and not refresh:
                return self._directory
        url = self.config.base_url.rstrip("/") + "/connector.sds"
        response = self._guard(
            lambda: self._transport.get(url, None, {"Accept": "application/xml, text/xml"}),
            what="connector.sds",
        )
        if response.status_code != 200:
            raise KonnektorError(
                None,
                _("Der Konnektor liefert keine Dienstbeschreibung (connector.sds, HTTP %(status)s).")
                % {"status": response.status_code},
                f"HTTP {response.status_code}",
                kind="protocol",
            )
        directory = parse_sds(response.content, tls=self.tls)
        with self._lock:
            self._directory = directory
            self._services.clear()
        return directory

    def _service(self, name: str) -> tuple[Any, tuple[int, int, int]]:
        directory = self.discover()
        with self._lock:
            cached = self._services.get(name)
            if cached is not None:
                return cached
            chosen = directory.services.get(name)
            if chosen is None:
                offered = ", ".join(directory.offered.get(name, [])) or _("keine")
                raise KonnektorError(
                    None,
                    _(
                        "Der Konnektor bietet den Dienst %(service)s in keiner vom Portal unterstützten Version an "
                        "(angeboten: %(offered)s)."
                    )
                    % {"service": name, "offered": offered},
                    f"{name} not offered in a supported version",
                    kind="config",
                )
            version_text, endpoint = chosen
            version = parse_version(version_text)
            assert version is not None
            major_minor = (version[0], version[1])
            settings = _SETTINGS["huge"] if name == "SignatureService" else _SETTINGS["default"]
            client = zeep.Client(  # type: ignore[no-untyped-call]
                wsdl=wsdl_document(WSDL_FILES[(name, major_minor)]),
                transport=self._transport,
                settings=settings,
                plugins=self._plugins,
            )
            proxy = client.create_service(binding_name(name, major_minor), endpoint)  # type: ignore[no-untyped-call]
            self._services[name] = (proxy, version)
            return proxy, version

    # -- operations ----------------------------------------------------------------------------------------

    def get_cards(self, ctx: CallContext, card_type: str = "HBA") -> list[Card]:
        proxy, _version = self._service("EventService")
        answer = self._guard(lambda: proxy.GetCards(**messages.get_cards(ctx, card_type)), what="GetCards")
        wanted = CARD_TYPE_GROUPS.get(card_type, {card_type} if card_type else None)
        cards = []
        for card in getattr(answer.Cards, "Card", None) or []:
            # Konnektors may answer a type filter with relatives (HBA-qSig, ZOD_2.0); batch QES needs an HBA.
            if wanted is not None and card.CardType not in wanted:
                continue
            cards.append(
                Card(
                    card_handle=card.CardHandle,
                    card_type=card.CardType,
                    iccsn=card.Iccsn,
                    ct_id=card.CtId,
                    slot_id=int(card.SlotId),
                    holder_name=card.CardHolderName,
                    certificate_expires=_date_or_none(getattr(card, "CertificateExpirationDate", None)),
                )
            )
        return cards

    def read_qes_certificate(self, ctx: CallContext, card_handle: str, *, crypt: str | None = None) -> bytes:
        """The DER of the card's C.QES certificate (``crypt`` RSA or ECC; None: the Konnektor's default)."""
        return self._read_certificate(ctx, card_handle, "C.QES", crypt)

    def read_qes_certificates(self, ctx: CallContext, card_handle: str) -> list[bytes]:
        """Every C.QES certificate of the card: RSA, then ECC where the card has one (G2.1).

        With Crypt RSA_ECC a G2.1 card signs with its ECC key while ReadCardCertificate answers with the RSA
        certificate unless asked for ECC: a check "signed by this card" compares the signer with all of them.
        """
        certificates = [self.read_qes_certificate(ctx, card_handle, crypt="RSA")]
        try:
            ecc = self.read_qes_certificate(ctx, card_handle, crypt="ECC")
        except KonnektorError as exc:
            if exc.code not in NO_ECC_CERTIFICATE:
                raise
        else:
            if ecc not in certificates:
                certificates.append(ecc)
        return certificates

    def get_pin_status(self, ctx: CallContext, card_handle: str, pin_ref: str = "PIN.QES") -> PinStatus:
        proxy, _version = self._service("CardService")
        answer = self._guard(
            lambda: proxy.GetPinStatus(**messages.pin(ctx, card_handle, pin_ref)),
            what="GetPinStatus",
        )
        return PinStatus(
            status=answer.PinStatus or "",
            left_tries=int(answer.LeftTries) if answer.LeftTries is not None else None,
        )

    def verify_pin(self, ctx: CallContext, card_handle: str, pin_ref: str = "PIN.QES") -> PinResult:
        """Ask for the PIN at the card terminal (waits like SignDocument does)."""
        proxy, _version = self._service("CardService")
        answer = self._guard(
            lambda: proxy.VerifyPin(**messages.pin(ctx, card_handle, pin_ref)),
            what="VerifyPin",
            sign=True,
        )
        return PinResult(
            result=answer.PinResult or "",
            left_tries=int(answer.LeftTries) if answer.LeftTries is not None else None,
        )

    def get_job_number(self, ctx: CallContext) -> str:
        proxy, _version = self._service("SignatureService")
        answer = self._guard(lambda: proxy.GetJobNumber(**messages.get_job_number(ctx)), what="GetJobNumber")
        job_number = str(answer or "")
        if not JOB_NUMBER.fullmatch(job_number):
            raise KonnektorError(
                None,
                _("Der Konnektor hat eine ungültige Jobnummer geliefert."),
                f"job number {job_number!r}",
                kind="protocol",
            )
        return job_number

    def sign_documents(
        self, ctx: CallContext, card_handle: str, job_number: str, items: Sequence[SignItem]
    ) -> list[SignResult]:
        """ONE SignDocument call for ``items`` (split them first: ``konnektor.batches``). Results come back in the
        order of ``items``, matched by RequestID; an item the Konnektor returned nothing for is not signed."""
        if not items:
            return []
        if not JOB_NUMBER.fullmatch(job_number):
            raise ValueError(f"job number {job_number!r} is not of the form ABC-123")
        request_ids = [item.request_id for item in items]
        if len(set(request_ids)) != len(request_ids):
            raise ValueError("request ids must be unique within a SignDocument call")
        proxy, version = self._service("SignatureService")
        # Crypt came with SignatureService 7.4.2.
        crypt = self.config.crypt if version >= (7, 4, 2) else None
        kwargs = messages.sign_document(ctx, card_handle, job_number, items, crypt=crypt)
        answer = self._guard(lambda: proxy.SignDocument(**kwargs), what="SignDocument", sign=True)
        responses = {str(response.RequestID): response for response in (answer or [])}
        return [_sign_result(item, responses.get(item.request_id)) for item in items]

    def stop_signature(self, ctx: CallContext, job_number: str) -> None:
        proxy, _version = self._service("SignatureService")
        self._guard(lambda: proxy.StopSignature(**messages.stop_signature(ctx, job_number)), what="StopSignature")

    # -- certificates, verification, Komfortsignatur, authentication (issues 12 and 14) ----------------------

    def read_card_certificate(
        self, ctx: CallContext, card_handle: str, cert_ref: str = "C.AUT", crypt: str = "ECC"
    ) -> bytes:
        """The DER of one certificate of the card: ``cert_ref`` C.AUT, C.ENC, C.SIG or C.QES, ``crypt`` RSA or ECC
        (4258 when the card has no ECC certificates; 4149 for a reference the card type does not have)."""
        if cert_ref not in CERT_REFS:
            raise ValueError(f"certificate reference {cert_ref!r} is not one of {', '.join(CERT_REFS)}")
        if crypt not in CRYPTS:
            raise ValueError(f"crypt {crypt!r} is not one of {', '.join(CRYPTS)}")
        return self._read_certificate(ctx, card_handle, cert_ref, crypt)

    def _read_certificate(self, ctx: CallContext, card_handle: str, cert_ref: str, crypt: str | None) -> bytes:
        proxy, _version = self._service("CertificateService")
        kwargs = messages.read_card_certificates(ctx, card_handle, cert_ref, crypt)
        answer = self._guard(lambda: proxy.ReadCardCertificate(**kwargs), what="ReadCardCertificate")
        for info in answer.X509DataInfoList.X509DataInfo:
            if info.CertRef == cert_ref and info.X509Data is not None and info.X509Data.X509Certificate:
                return bytes(info.X509Data.X509Certificate)
        raise KonnektorError(
            None,
            _("Der Konnektor hat das Zertifikat %(cert_ref)s der Karte nicht geliefert.") % {"cert_ref": cert_ref},
            f"no {cert_ref} in answer",
            kind="protocol",
        )

    def verify_document(
        self, ctx: CallContext, *, signature: bytes | None, document: bytes | None, mime_type: str
    ) -> VerifyResult:
        """SignatureService.VerifyDocument. PAdES: the signed PDF as ``document``, ``signature`` None. CAdES
        detached: the CMS (.p7s) as ``signature`` and the signed ``document``. INVALID/INCONCLUSIVE are answers
        (``VerifyResult.valid`` False with a German ``reason``), not errors; a fault is a KonnektorError."""
        if signature is None and document is None:
            raise ValueError("verify_document needs a signature, a document or both")
        for part in (signature, document):
            if part is not None and len(part) > self.config.max_document_bytes:
                raise KonnektorError(4283, error_text(4283), "document too big for VerifyDocument", kind="config")
        # VerifyDocument is the same in SignatureService 7.4 and 7.5.
        proxy, _version = self._service("SignatureService")
        kwargs = messages.verify_document(ctx, signature=signature, document=document, mime_type=mime_type)
        answer = self._guard(lambda: proxy.VerifyDocument(**kwargs), what="VerifyDocument")
        outputs = getattr(answer, "OptionalOutputs", None)
        elements = list(getattr(outputs, "_value_1", None) or []) if outputs is not None else []
        return verify_result(str(answer.VerificationResult.HighLevelResult or ""), elements)

    def activate_comfort_signature(self, ctx: CallContext, card_handle: str) -> None:
        """Komfortsignatur on for (card, ``ctx.user_id``): the physician enters PIN.QES once at the card terminal
        (waits like SignDocument). ``ctx.user_id`` must be a fresh UUID per activation (gemILF_PS A_19259).
        Refused without a request when the connection mode is "plain" (the Konnektor allows it only with Login or
        Zertifikat)."""
        if self.config.mode == "plain":
            raise KonnektorError(None, str(COMFORT_NEEDS_SECURE_MODE), "comfort signature in mode plain", kind="config")
        if not ctx.user_id:
            raise ValueError("the Komfortsignatur needs ctx.user_id (a fresh UUID per activation)")
        proxy, _version = self._signature_service_75("ActivateComfortSignature")
        kwargs = messages.card_and_context(ctx, card_handle)
        answer = self._guard(
            lambda: proxy.ActivateComfortSignature(**kwargs), what="ActivateComfortSignature", sign=True
        )
        if str(getattr(answer, "SignatureMode", "") or "") != "COMFORT":
            raise KonnektorError(
                4267,
                error_text(4267),
                f"SignatureMode {getattr(answer, 'SignatureMode', None)!r} after activation",
                kind="protocol",
            )

    def deactivate_comfort_signature(self, ctx: CallContext, card_handles: Sequence[str]) -> None:
        """Komfortsignatur off for the cards (all their sessions). The Konnektor's "no session" warnings
        (4265/4266) are not errors: afterwards there is no session either way. ``ctx`` is not sent (the operation
        has no context); it is taken for symmetry with the other calls."""
        if not card_handles:
            return
        proxy, _version = self._signature_service_75("DeactivateComfortSignature")
        kwargs = messages.deactivate_comfort_signature(card_handles)
        self._guard(lambda: proxy.DeactivateComfortSignature(**kwargs), what="DeactivateComfortSignature")

    def get_signature_mode(self, ctx: CallContext, card_handle: str) -> SignatureMode:
        """Whether a Komfortsignatur session of ``ctx.user_id`` is open on the card, and what is left of it."""
        proxy, _version = self._signature_service_75("GetSignatureMode")
        kwargs = messages.card_and_context(ctx, card_handle)
        answer = self._guard(lambda: proxy.GetSignatureMode(**kwargs), what="GetSignatureMode")
        enabled = str(answer.ComfortSignatureStatus or "").strip().upper() == "ENABLED"
        comfort_max = int(answer.ComfortSignatureMax) if answer.ComfortSignatureMax is not None else None
        timer = parse_duration(answer.ComfortSignatureTimer)
        session = getattr(answer, "SessionInfo", None)
        if session is None or str(session.SignatureMode or "").strip().upper() != "COMFORT":
            return SignatureMode(
                comfort_active=False, comfort_enabled=enabled, comfort_max=comfort_max, comfort_timer=timer
            )
        remaining = int(session.CountRemaining) if session.CountRemaining is not None else None
        left = parse_duration(session.TimeRemaining)
        active = (remaining is None or remaining > 0) and (left is None or left > dt.timedelta(0))
        valid_until = (dt.datetime.now(dt.UTC) + left).replace(microsecond=0) if left is not None else None
        return SignatureMode(
            comfort_active=active,
            remaining_count=remaining,
            valid_until=valid_until,
            comfort_enabled=enabled,
            comfort_max=comfort_max,
            comfort_timer=timer,
        )

    def external_authenticate(self, ctx: CallContext, card_handle: str, data: bytes, *, crypt: str = "ECC") -> bytes:
        """AuthSignatureService.ExternalAuthenticate: the card's AUT key signs ``data`` (a SHA-256 digest, 32
        bytes). ``crypt`` ECC: ECDSA, the signature as the Konnektor returns it (plain r||s, BSI TR-03111; 64
        bytes for a 256-bit curve); RSA: RSASSA-PSS."""
        if len(data) != 32:
            raise ValueError("ExternalAuthenticate signs a SHA-256 digest: 32 bytes")
        if crypt not in CRYPTS:
            raise ValueError(f"crypt {crypt!r} is not one of {', '.join(CRYPTS)}")
        proxy, _version = self._service("AuthSignatureService")
        kwargs = messages.external_authenticate(ctx, card_handle, data, crypt=crypt)
        answer = self._guard(lambda: proxy.ExternalAuthenticate(**kwargs), what="ExternalAuthenticate")
        signature = _signature_bytes(answer)
        if signature is None:
            raise KonnektorError(
                None,
                _("Der Konnektor hat keine Signatur für die Authentisierung geliefert."),
                "ExternalAuthenticate without Base64Signature",
                kind="protocol",
            )
        return signature

    def _signature_service_75(self, operation: str) -> tuple[Any, tuple[int, int, int]]:
        proxy, version = self._service("SignatureService")
        if version < (7, 5, 0):
            raise KonnektorError(
                None,
                _(
                    "Der Konnektor bietet %(operation)s nicht an: dafür ist der SignatureService 7.5 nötig "
                    "(angeboten: %(version)s)."
                )
                % {"operation": operation, "version": ".".join(map(str, version))},
                f"{operation} needs SignatureService 7.5",
                kind="config",
            )
        return proxy, version

    # -- errors ----------------------------------------------------------------------------------------------

    def _guard(self, call: Callable[[], T], *, what: str, sign: bool = False) -> T:
        try:
            return call()
        except KonnektorError:
            raise
        except zeep.exceptions.Fault as fault:
            detail = fault.detail if not isinstance(fault.detail, (str, bytes)) else None
            raise error_from_fault(fault.message, detail) from None
        except (
            zeep.exceptions.DTDForbidden,
            zeep.exceptions.EntitiesForbidden,
            zeep.exceptions.ExternalReferenceForbidden,
        ) as exc:
            raise KonnektorError(
                None,
                _("Die Antwort des Konnektors wurde abgelehnt: sie enthält eine DTD, Entitäten oder externe Verweise."),
                f"{what}: {exc!r}",
                kind="protocol",
            ) from None
        except requests.exceptions.ConnectTimeout as exc:
            self._forget_directory()
            raise KonnektorError(
                None,
                _("Konnektor nicht erreichbar: keine Verbindung innerhalb von %(seconds)s Sekunden.")
                % {"seconds": f"{self.config.timeout:g}"},
                f"{what}: {exc}",
                kind="timeout",
            ) from None
        except requests.exceptions.ReadTimeout as exc:
            seconds = self.config.sign_timeout if sign else self.config.timeout
            if sign:
                text = _(
                    "Der Konnektor hat nicht innerhalb von %(seconds)s Sekunden geantwortet (PIN-Eingabe oder "
                    "Signatur dauerte zu lange)."
                )
            else:
                text = _("Der Konnektor hat nicht innerhalb von %(seconds)s Sekunden geantwortet.")
            text %= {"seconds": f"{seconds:g}"}
            raise KonnektorError(None, text, f"{what}: {exc}", kind="timeout") from None
        except requests.exceptions.SSLError as exc:
            self._forget_directory()
            raise KonnektorError(None, _tls_text(str(exc), self.config.mode), f"{what}: {exc}", kind="tls") from None
        except requests.exceptions.ConnectionError as exc:
            self._forget_directory()
            text = _("Konnektor nicht erreichbar: die Verbindung ist fehlgeschlagen oder wurde abgebrochen.")
            if self.config.mode == "cert":
                text += " " + _("Möglicherweise lehnt der Konnektor das Client-Zertifikat ab.")
            raise KonnektorError(None, text, f"{what}: {exc}", kind="unreachable") from None
        except requests.exceptions.RequestException as exc:
            self._forget_directory()
            raise KonnektorError(None, error_text(None), f"{what}: {exc}", kind="unreachable") from None
        except zeep.exceptions.TransportError as exc:
            if "invalid XML" in str(exc.message):
                raise KonnektorError(
                    None,
                    _("Die Antwort des Konnektors ist kein zulässiges XML und wurde abgelehnt."),
                    f"{what}: {exc.message}"[:2000],
                    kind="protocol",
                ) from None
            raise KonnektorError(
                None,
                _("Der Konnektor hat mit HTTP-Status %(status)s statt einer SOAP-Antwort geantwortet.")
                % {"status": exc.status_code},
                f"{what}: {exc.message}",
                kind="protocol",
            ) from None
        except zeep.exceptions.Error as exc:
            raise KonnektorError(
                None,
                _("Die Antwort des Konnektors ist ungültig und wurde nicht verarbeitet."),
                f"{what}: {exc!r}",
                kind="protocol",
            ) from None

    def _forget_directory(self) -> None:
        with self._lock:
            self._directory = None
            self._services.clear()


def _tls_text(detail: str, mode: str) -> str:
    lowered = detail.lower()
    if "certificate required" in lowered or "handshake failure" in lowered or "unknown ca" in lowered:
        return _(
            "Konnektor nicht erreichbar: der Konnektor hat die TLS-Verbindung abgelehnt (Client-Zertifikat prüfen)."
        )
    if "certificate verify failed" in lowered:
        return _(
            "Konnektor nicht erreichbar: das TLS-Zertifikat des Konnektors ist nicht vertrauenswürdig "
            "(CA-Zertifikat in den Einstellungen prüfen)."
        )
    if mode == "cert":
        return _("Konnektor nicht erreichbar: die TLS-Verbindung ist fehlgeschlagen (Client-Zertifikat prüfen).")
    return _("Konnektor nicht erreichbar: die TLS-Verbindung ist fehlgeschlagen.")


def _sign_result(item: SignItem, response: Any) -> SignResult:
    if response is None:
        return SignResult(request_id=item.request_id, ok=False, text=str(NOT_RETURNED))
    traces = traces_from_object(getattr(response.Status, "Error", None))
    last = traces[-1] if traces else None
    signature = _signature_bytes(response)
    signed_document = _signed_document_bytes(response)
    produced = signed_document if item.pades else signature
    failed = last is not None and is_error_severity(last.severity)
    ok = produced is not None and not failed
    code = last.code if last is not None else None
    if ok:
        text = error_text(code) if code is not None else ""
    elif code is not None:
        text = error_text(code)
    else:
        text = _("Nicht signiert: der Konnektor hat für dieses Dokument keine Signatur geliefert.")
    return SignResult(
        request_id=item.request_id,
        ok=ok,
        signature=signature if ok else None,
        signed_document=signed_document if ok else None,
        code=code,
        text=text,
    )


def _signature_bytes(response: Any) -> bytes | None:
    signature_object = getattr(response, "SignatureObject", None)
    if signature_object is None:
        return None
    base64_signature = getattr(signature_object, "Base64Signature", None)
    if base64_signature is None:
        return None
    value = getattr(base64_signature, "_value_1", None)
    return bytes(value) if value else None


def _signed_document_bytes(response: Any) -> bytes | None:
    outputs = getattr(response, "OptionalOutputs", None)
    document = getattr(outputs, "DocumentWithSignature", None) if outputs is not None else None
    if document is None:
        return None
    data = getattr(document, "Base64Data", None)
    value = getattr(data, "_value_1", None) if data is not None else None
    if not value:
        value = getattr(document, "Base64XML", None)
    return bytes(value) if value else None


def _date_or_none(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None
