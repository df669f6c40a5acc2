"""The Konnektor's SOAP operations: EventService.GetCards, CardService.GetPinStatus/VerifyPin,
SignatureService.GetJobNumber/SignDocument/StopSignature (7.5 and 7.4), CertificateService.ReadCardCertificate.

The Komfortsignatur is in :mod:`tisim.konnektor.comfort`, VerifyDocument in :mod:`tisim.konnektor.verify_document`,
ExternalAuthenticate in :mod:`tisim.konnektor.authentication`; :mod:`tisim.konnektor.handlers` gathers them all.

Each handler takes the parsed operation element and returns the response element; a
:class:`KonnektorFault` ends the call with a SOAP fault. The state they work on (cards, terminals,
jobs, faults) lives in :class:`tisim.konnektor.simulator.KonnektorSimulator`.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from tisim.konnektor import signatures
from tisim.konnektor.cards import ComfortSession, SimCard
from tisim.konnektor.pki import Issued
from tisim.konnektor.soap import (
    CADES,
    CARD,
    CARDCMN,
    CERT,
    CERTCMN,
    CONN,
    DSS,
    EVT,
    PADES,
    SIG_V74,
    SIG_V75,
    Context,
    KonnektorFault,
    Trace,
    child,
    element,
    parse_bool,
    parse_context,
    q,
    required_text,
    status,
    text_of,
)
from tisim.konnektor.terminal import PinRound, Terminal

if TYPE_CHECKING:
    from tisim.konnektor.simulator import KonnektorSimulator

JOB_NUMBER = re.compile(r"[A-Z]{3}-[0-9]{3}")
# The characters gematik allows in the ShortText (SIG:ShortText in the 7.5 schema), at most 30 of them.
SHORT_TEXT = re.compile(r"[a-zA-Z 0-9_.\-äöüÄÖÜß]{1,30}")
NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
QES_MIME_TYPES = ("application/pdf-a", "application/pdf", "text/plain", "text/xml", "application/xml", "image/tiff")

Handler = Callable[["KonnektorSimulator", etree._Element], etree._Element]


@dataclass
class SignItem:
    request_id: str
    content: bytes
    mime_type: str
    short_text: str
    signature_type: str
    include_econtent: bool
    include_revocation_info: bool
    document_id: str
    document_attrs: dict[str, str]


@dataclass(frozen=True)
class SignedRequest:
    """What the simulator signed, for assertions in tests."""

    job_number: str
    request_id: str
    card_handle: str
    iccsn: str
    workplace_id: str
    user_id: str | None
    signature_type: str
    mime_type: str
    short_text: str
    include_revocation_info: bool
    sub_batch: int
    algorithm: str  # the card key that signed: "RSA" or "ECC"
    comfort: bool = False  # signed under a Komfortsignatur session (no PIN entry)


@dataclass
class Outcome:
    ok: bool
    signature: bytes | None = None
    signed_document: bytes | None = None
    trace: Trace | None = None


@dataclass
class Job:
    job_number: str
    card: SimCard
    terminal: Terminal | None
    total: int = 0
    crypt: str | None = None
    stopped: bool = False
    pin_round: PinRound | None = None
    signed: list[str] = field(default_factory=list)
    # Signing under an open Komfortsignatur session: no PIN entry, each signature counted.
    comfort: ComfortSession | None = None


# --- context and cards ---------------------------------------------------------------------------


def check_context(sim: KonnektorSimulator, ctx: Context, *, card: SimCard | None = None, user: bool = False) -> None:
    if not (ctx.mandant_id and ctx.client_system_id and ctx.workplace_id):
        raise KonnektorFault(4021, "MandantId, ClientSystemId und WorkplaceId sind verpflichtend")
    if ctx.mandant_id != sim.mandant_id:
        raise KonnektorFault(4004, ctx.mandant_id)
    if ctx.client_system_id != sim.client_system_id:
        raise KonnektorFault(4005, ctx.client_system_id)
    if ctx.workplace_id not in sim.workplace_ids():
        raise KonnektorFault(4006, ctx.workplace_id)
    if card is not None and card.card_type == "HBA" and user and not ctx.user_id:
        raise KonnektorFault(4003, "UserId fehlt für den HBA")


def card_from(sim: KonnektorSimulator, operation: etree._Element) -> SimCard:
    handle = required_text(operation, CONN, "CardHandle")
    card = sim.card_by_handle(handle)
    if card is None:
        raise KonnektorFault(4101, handle)
    return card


def check_reachable(sim: KonnektorSimulator, ctx: Context, card: SimCard) -> Terminal:
    # The PIN is typed at the workplace's own terminal; a card elsewhere would need a Remote-PIN terminal.
    terminal = sim.terminals[card.ct_id]
    if ctx.workplace_id not in terminal.workplaces:
        raise KonnektorFault(4092, f"Kartenterminal {card.ct_id} ist nicht lokal für {ctx.workplace_id}")
    return terminal


# --- EventService ----------------------------------------------------------------------------------

CARD_TYPE_FILTER = {
    "HBA": ("HBA",),
    "HBAx": ("HBA", "HBA-qSig", "ZOD_2.0"),
    "HBA-qSig": ("HBA-qSig",),
    "ZOD_2.0": ("ZOD_2.0",),
    "SMC-B": ("SMC-B",),
    "HSM-B": ("HSM-B",),
    "SM-B": ("SMC-B", "HSM-B"),
    "EGK": ("EGK",),
    "KVK": ("KVK",),
    "SMC-KT": ("SMC-KT",),
    "UNKNOWN": ("UNKNOWN",),
}


def get_cards(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    check_context(sim, ctx)
    mandant_wide = parse_bool(op.get("mandant-wide"), default=False)
    ct_id = text_of(op, CARDCMN, "CtId")
    slot_id = text_of(op, CARDCMN, "SlotId")
    card_type = text_of(op, CARDCMN, "CardType")
    if card_type is not None and card_type not in CARD_TYPE_FILTER:
        raise KonnektorFault(4000, f"CardType {card_type}")
    if ct_id is not None and ct_id not in sim.terminals:
        raise KonnektorFault(4000, f"CtId {ct_id} unbekannt")
    response = element(None, EVT, "GetCardsResponse")
    status(response)
    cards_el = element(response, CARD, "Cards")
    for card in sim.inserted_cards():
        if not mandant_wide and ctx.workplace_id not in sim.terminals[card.ct_id].workplaces:
            continue
        if ct_id is not None and card.ct_id != ct_id:
            continue
        if slot_id is not None and str(card.slot_id) != slot_id:
            continue
        if card_type is not None and card.card_type not in CARD_TYPE_FILTER[card_type]:
            continue
        _card_info(cards_el, card)
    return response


def _version(parent: etree._Element, name: str, major: int, minor: int, revision: int) -> None:
    v = element(parent, CARD, name)
    element(v, CARD, "Major", str(major))
    element(v, CARD, "Minor", str(minor))
    element(v, CARD, "Revision", str(revision))


def _card_info(parent: etree._Element, card: SimCard) -> None:
    c = element(parent, CARD, "Card")
    element(c, CONN, "CardHandle", card.card_handle)
    element(c, CARDCMN, "CardType", card.card_type)
    version = element(c, CARD, "CardVersion")
    _version(version, "COSVersion", 4, 0, 0)
    # ObjectSystemVersion >= 4.4.0 tells clients the card is G2.1 and carries ECC keys.
    _version(version, "ObjectSystemVersion", 4, 4 if card.generation == "G2.1" else 3, 0)
    element(c, CARDCMN, "Iccsn", card.iccsn)
    element(c, CARDCMN, "CtId", card.ct_id)
    element(c, CARDCMN, "SlotId", str(card.slot_id))
    element(c, CARD, "InsertTime", card.insert_time.isoformat().replace("+00:00", "Z"))
    element(c, CARD, "CardHolderName", card.holder_name)
    expiry_certificate = card.expiry_certificate
    if expiry_certificate is not None:
        expiry = expiry_certificate.cert.not_valid_after_utc.date().isoformat()
        element(c, CARD, "CertificateExpirationDate", expiry)


# --- CardService -----------------------------------------------------------------------------------


def _pin_ref(op: etree._Element, card: SimCard) -> str:
    pin_ref = required_text(op, CARDCMN, "PinTyp")
    if pin_ref not in card.pin_refs():
        raise KonnektorFault(4072, pin_ref)
    return pin_ref


def get_pin_status(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card)
    pin_ref = _pin_ref(op, card)
    pin_state = sim.effective_pin_state(card)
    session = sim.comfort_session(card)
    if (
        pin_ref == "PIN.QES"
        and session is not None
        and (ctx.user_id, ctx.client_system_id) == (session.user_id, session.client_system_id)
    ):
        # The Komfortsignatur keeps PIN.QES verified in this UserId's card session.
        pin_state = "VERIFIED"
    response = element(None, CARD, "GetPinStatusResponse")
    status(response)
    element(response, CARD, "PinStatus", pin_state)
    if pin_state in ("VERIFIABLE", "BLOCKED"):
        element(response, CARD, "LeftTries", str(card.left_tries if pin_state == "VERIFIABLE" else 0))
    return response


def verify_pin(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card, user=True)
    pin_ref = _pin_ref(op, card)
    terminal = check_reachable(sim, ctx, card)
    response = element(None, CARD, "VerifyPinResponse")
    pin_state = sim.effective_pin_state(card)
    if pin_state == "BLOCKED":
        status(response)
        element(response, CARDCMN, "PinResult", "WASBLOCKED")
        element(response, CARDCMN, "LeftTries", "0")
        return response
    if pin_state == "TRANSPORT_PIN":
        status(response)
        element(response, CARDCMN, "PinResult", "TRANSPORT_PIN")
        return response
    lines = {
        "PIN.QES": ["Eingabe Signatur-PIN HBA", "PIN.QES:"],
        "PIN.CH": ["Eingabe Freigabe-PIN HBA", "PIN.HBA:"],
        "PIN.SMC": ["Eingabe PIN SMC-B", "PIN.SMC:"],
    }[pin_ref]
    with sim.reserve(card, f"VerifyPin:{secrets.token_hex(4)}"):
        result = sim.ask_pin(card, terminal, lines, job=None)
    if result == "timeout":
        raise KonnektorFault(4043)
    if result in ("cancel", "stopped"):
        raise KonnektorFault(4049)
    status(response)
    if result == "ok":
        element(response, CARDCMN, "PinResult", "OK")
    else:
        element(response, CARDCMN, "PinResult", "NOWBLOCKED" if card.pin_state == "BLOCKED" else "REJECTED")
        element(response, CARDCMN, "LeftTries", str(card.left_tries))
    return response


# --- CertificateService ------------------------------------------------------------------------------


def read_card_certificate(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    card = card_from(sim, op)
    ctx = parse_context(op)
    check_context(sim, ctx, card=card)
    ref_list = child(op, CERT, "CertRefList")
    refs = [(el.text or "").strip() for el in ref_list.findall(q(CERT, "CertRef"))] if ref_list is not None else []
    if not refs:
        raise KonnektorFault(4000, "CertRefList leer")
    crypt = text_of(op, CERT, "Crypt")
    if crypt not in (None, "RSA", "ECC"):
        raise KonnektorFault(4000, f"Crypt {crypt}")
    allowed = ("C.QES",) if card.card_type == "HBA" else ("C.AUT", "C.ENC", "C.SIG")
    for ref in refs:
        if ref not in allowed:
            raise KonnektorFault(4149, ref)
    found: list[tuple[str, Issued]] = []
    for ref in refs:
        try:
            # C.AUT of the SMC-B: its own keys (SMC-B CA); the other references: the card's general keys.
            issued = card.aut_key_for(crypt) if ref == "C.AUT" and card.aut_keys else card.key_for(crypt or "RSA")
        except KeyError:
            # ECC asked on a card without ECC keys (G2.0): 4258, as before for C.QES.
            raise KonnektorFault(4258 if crypt == "ECC" else 4149, f"{ref} {crypt or 'RSA'}") from None
        found.append((ref, issued))
    response = element(None, CERT, "ReadCardCertificateResponse")
    status(response)
    info_list = element(response, CERTCMN, "X509DataInfoList")
    for ref, issued in found:
        cert = issued.cert
        info = element(info_list, CERTCMN, "X509DataInfo")
        element(info, CERTCMN, "CertRef", ref)
        data = element(info, CERTCMN, "X509Data")
        issuer_serial = element(data, CERTCMN, "X509IssuerSerial")
        element(issuer_serial, CERTCMN, "X509IssuerName", cert.issuer.rfc4514_string())
        element(issuer_serial, CERTCMN, "X509SerialNumber", str(cert.serial_number))
        element(data, CERTCMN, "X509SubjectName", cert.subject.rfc4514_string())
        element(data, CERTCMN, "X509Certificate", base64.b64encode(issued.cert_der).decode("ascii"))
    return response


# --- SignatureService ---------------------------------------------------------------------------------


def get_job_number(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    check_context(sim, ctx)
    sig = op.tag.split("}")[0][1:]
    response = element(None, sig, "GetJobNumberResponse")
    element(response, sig, "JobNumber", sim.new_job_number())
    return response


def stop_signature(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    check_context(sim, ctx)
    sig = op.tag.split("}")[0][1:]
    job_number = required_text(op, sig, "JobNumber")
    if not sim.stop_job(job_number):
        raise KonnektorFault(4243, job_number)
    response = element(None, sig, "StopSignatureResponse")
    status(response)
    return response


def _parse_sign_request(sim: KonnektorSimulator, sig: str, req: etree._Element) -> SignItem:
    request_id = req.get("RequestID")
    if not request_id:
        raise KonnektorFault(4000, "RequestID fehlt")
    inputs = child(req, sig, "OptionalInputs")
    signature_type = None
    include_econtent = False
    if inputs is not None:
        signature_type = text_of(inputs, DSS, "SignatureType")
        include_econtent = parse_bool(text_of(inputs, sig, "IncludeEContent"), default=False)
    document = child(req, sig, "Document")
    if document is None:
        raise KonnektorFault(4000, f"{request_id}: Document fehlt")
    base64_data = child(document, DSS, "Base64Data")
    base64_xml = child(document, CONN, "Base64XML")
    if base64_data is not None:
        mime_type = (base64_data.get("MimeType") or "").strip()
        raw = base64_data.text or ""
    elif base64_xml is not None:
        mime_type, raw = "text/xml", base64_xml.text or ""
    else:
        raise KonnektorFault(4000, f"{request_id}: Base64Data fehlt")
    try:
        content = base64.b64decode("".join(raw.split()), validate=True)
    except binascii.Error as exc:
        raise KonnektorFault(4000, f"{request_id}: Base64Data ist kein Base64") from exc
    short_text = document.get("ShortText")
    if short_text is None:
        raise KonnektorFault(4000, f"{request_id}: ShortText fehlt (für QES verpflichtend)")
    if not SHORT_TEXT.fullmatch(short_text):
        raise KonnektorFault(4000, f"{request_id}: ShortText höchstens 30 erlaubte Zeichen")
    revocation = text_of(req, sig, "IncludeRevocationInfo")
    if revocation is None:
        raise KonnektorFault(4000, f"{request_id}: IncludeRevocationInfo fehlt")
    if len(content) > sim.max_document_bytes:
        raise KonnektorFault(4283, f"{request_id}: {len(content)} Bytes")
    base_mime = mime_type.split(";")[0].strip().lower()
    if base_mime not in QES_MIME_TYPES:
        raise KonnektorFault(4110, f"{request_id}: {mime_type or 'kein MimeType'}")
    is_pdf = content.startswith(b"%PDF-")
    if signature_type is None:
        # TAB_KON_583: without a SignatureType the format decides — PDF/A → PAdES, XML → XAdES, else CAdES.
        signature_type = PADES if is_pdf else CADES
    if signature_type == PADES:
        if not is_pdf or base_mime not in ("application/pdf-a", "application/pdf"):
            raise KonnektorFault(4110, f"{request_id}: PAdES nur für PDF")
        if include_econtent:
            raise KonnektorFault(4111, f"{request_id}: IncludeEContent nur für CAdES")
    elif signature_type != CADES:
        raise KonnektorFault(4111, f"{request_id}: {signature_type}")
    attrs = {k: v for k, v in document.attrib.items() if k in ("ID", "RefURI", "RefType", "ShortText")}
    doc_id = attrs.get("ID", "")
    return SignItem(
        request_id=request_id,
        content=content,
        mime_type=mime_type,
        short_text=short_text,
        signature_type=signature_type,
        include_econtent=include_econtent,
        include_revocation_info=parse_bool(revocation, default=True),
        document_id=doc_id,
        document_attrs=attrs,
    )


def sign_document(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    sig = op.tag.split("}")[0][1:]
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card, user=True)
    if card.card_type != "HBA":
        raise KonnektorFault(4126, f"{card.card_type}: QES nur mit HBA")
    terminal = check_reachable(sim, ctx, card)
    crypt = text_of(op, sig, "Crypt")
    if crypt == "ECC" and "ECC" not in card.keys:
        raise KonnektorFault(4258)
    if text_of(op, sig, "TvMode") is None:
        raise KonnektorFault(4000, "TvMode fehlt")
    job_number = text_of(op, sig, "JobNumber")
    if job_number is None or not JOB_NUMBER.fullmatch(job_number):
        raise KonnektorFault(4000, f"JobNumber fehlt oder ungültig: {job_number!r}")
    requests = op.findall(q(sig, "SignRequest"))
    if not requests:
        raise KonnektorFault(4000, "kein SignRequest")
    if len(requests) > sim.max_requests_per_call:
        raise KonnektorFault(4000, f"{len(requests)} SignRequests, höchstens {sim.max_requests_per_call}")
    items = [_parse_sign_request(sim, sig, req) for req in requests]
    if len({item.request_id for item in items}) != len(items):
        raise KonnektorFault(4000, "RequestID nicht eindeutig")
    if sum(len(item.content) for item in items) > sim.max_call_bytes:
        raise KonnektorFault(4283, "Summe der Dokumente zu groß")

    if sim.take_fault("job-number-reused") is not None or not sim.use_job_number(job_number):
        raise KonnektorFault(4252, job_number)
    busy = sim.take_fault("card-busy")
    if busy is not None:
        raise KonnektorFault(int(busy.params.get("code", 4060)))
    if sim.take_fault("hba-other-user") is not None:
        raise KonnektorFault(4018)
    pin_state = sim.effective_pin_state(card)
    if pin_state == "TRANSPORT_PIN":
        raise KonnektorFault(4065)
    if pin_state == "BLOCKED":
        raise KonnektorFault(4063)
    comfort = _comfort_for(sim, card, ctx, len(items))

    job = Job(job_number=job_number, card=card, terminal=terminal, total=len(items), crypt=crypt, comfort=comfort)
    outcomes: dict[str, Outcome] = {}
    with sim.reserve(card, job_number), sim.running_job(job):
        size = sim.signatures_per_pin or len(items)
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        for number, batch in enumerate(batches):
            if job.stopped:
                _fill(outcomes, items, Trace(4049, "StopSignature"))
                break
            lines = [f"#{job_number}", "Eingabe Signatur-PIN HBA", "PIN.QES:"]
            # Komfortsignatur: the PIN was entered at the activation.
            result = "ok" if comfort is not None else sim.ask_pin(card, terminal, lines, job=job)
            if result != "ok":
                code = {
                    "timeout": 4043,
                    "cancel": 4049,
                    "stopped": 4049,
                    "wrong": 4085,
                    "blocked": 4063,
                    "removed": 4008,
                }[result]
                detail = {
                    "stopped": "StopSignature",
                    "removed": "Karte während der PIN-Eingabe gezogen",
                    "wrong": f"PIN falsch, verbleibende Versuche: {card.left_tries}",
                }.get(result, "")
                # TAB_KON_192: stopping ends the job without error; the other aborts are errors unless an
                # earlier sub-batch was signed — then those signatures come back and the rest is marked.
                if number == 0 and result != "stopped":
                    raise KonnektorFault(code, detail)
                _fill(outcomes, items, Trace(code, detail))
                break
            batch_outcomes = _sign_batch(sim, job, batch, ctx, number + 1)
            if batch_outcomes is None:  # StopSignature while signing: this sub-batch is discarded
                _fill(outcomes, items, Trace(4049, "StopSignature"))
                break
            outcomes.update(batch_outcomes)
    response = element(None, sig, "SignDocumentResponse")
    used_ids: set[str] = set()
    for item in items:
        _sign_response(response, sig, item, outcomes[item.request_id], used_ids)
    return response


def _comfort_for(sim: KonnektorSimulator, card: SimCard, ctx: Context, count: int) -> ComfortSession | None:
    """The Komfortsignatur session this SignDocument signs under (None: a normal PIN entry), or the fault: 4271
    when it ran out (time or count, also when the batch needs more signatures than are left: nothing is signed
    then), 4278 when it was deactivated or the card pulled, 4018 when another UserId holds the card's session."""
    session = sim.comfort_session(card)
    if session is not None:
        if (ctx.user_id, ctx.client_system_id) != (session.user_id, session.client_system_id):
            raise KonnektorFault(4018, "Komfortsignatur eines anderen Nutzers aktiv")
        if count > session.remaining:
            raise KonnektorFault(4271, f"{count} Dokumente, nur noch {session.remaining} Komfortsignaturen")
        return session
    ended = sim.ended_comfort(ctx.user_id)
    if ended is not None:
        code, reason = ended
        raise KonnektorFault(code, reason)
    return None


def _fill(outcomes: dict[str, Outcome], items: list[SignItem], trace: Trace) -> None:
    for item in items:
        outcomes.setdefault(item.request_id, Outcome(ok=False, trace=trace))


def _sign_batch(
    sim: KonnektorSimulator, job: Job, batch: list[SignItem], ctx: Context, sub_batch: int
) -> dict[str, Outcome] | None:
    card = job.card
    key = card.key_for(job.crypt)
    algorithm = "ECC" if key is card.keys.get("ECC") else "RSA"
    done: dict[str, Outcome] = {}
    signed: list[SignedRequest] = []
    for item in batch:
        if job.stopped:
            return None
        # Pulled after `after` signatures (default 1), but always before the job's last document.
        removed = sim.take_fault(
            "card-removed", when=lambda f: len(job.signed) >= min(int(f.params.get("after", 1)), job.total - 1)
        )
        if removed is not None:
            sim.remove_card(card, reinsert=bool(removed.params.get("reinsert", True)))
            # TAB_KON_192 #7: any other error aborts the job and discards every signature made so far.
            raise KonnektorFault(4008, "Karte während der Signatur gezogen")
        request_id = item.request_id
        failed = sim.take_fault(
            "fail-request",
            when=lambda f, rid=request_id: f.params.get("request_id") in (None, rid),  # type: ignore[misc]
        )
        if failed is not None:
            done[item.request_id] = Outcome(
                ok=False, trace=Trace(int(failed.params.get("code", 4123)), item.request_id)
            )
            continue
        if item.signature_type == PADES:
            qes_ca = sim.pki.qes_ca
            signed_pdf = signatures.pades(item.content, key, qes_ca, short_text=item.short_text)
            done[item.request_id] = Outcome(ok=True, signed_document=signed_pdf)
        else:
            cms = signatures.cades(item.content, key, short_text=item.short_text, include_content=item.include_econtent)
            done[item.request_id] = Outcome(ok=True, signature=cms)
        job.signed.append(item.request_id)
        if job.comfort is not None:
            sim.count_comfort_signature(card, job.comfort)
        signed.append(
            SignedRequest(
                job_number=job.job_number,
                request_id=item.request_id,
                card_handle=card.card_handle,
                iccsn=card.iccsn,
                workplace_id=ctx.workplace_id,
                user_id=ctx.user_id,
                signature_type=item.signature_type,
                mime_type=item.mime_type,
                short_text=item.short_text,
                include_revocation_info=item.include_revocation_info,
                sub_batch=sub_batch,
                algorithm=algorithm,
                comfort=job.comfort is not None,
            )
        )
    sim.record_signed(signed)
    return done


def _sign_response(parent: etree._Element, sig: str, item: SignItem, outcome: Outcome, used_ids: set[str]) -> None:
    resp = element(parent, sig, "SignResponse")
    resp.set("RequestID", item.request_id)
    status(resp, None if outcome.ok else outcome.trace)
    if not outcome.ok:
        return
    if outcome.signed_document is not None:
        # SignaturePtr/@WhichDocument is an IDREF: the DocumentWithSignature must carry a unique ID.
        doc_id = item.document_id
        if not NCNAME.fullmatch(doc_id) or doc_id in used_ids:
            doc_id = _fresh_id(used_ids)
        used_ids.add(doc_id)
        outputs = element(resp, sig, "OptionalOutputs")
        with_sig = element(outputs, sig, "DocumentWithSignature")
        for key, value in item.document_attrs.items():
            with_sig.set(key, value)
        with_sig.set("ID", doc_id)
        data = element(with_sig, DSS, "Base64Data", base64.b64encode(outcome.signed_document).decode("ascii"))
        data.set("MimeType", item.mime_type)
        sig_obj = element(resp, DSS, "SignatureObject")
        element(sig_obj, DSS, "SignaturePtr").set("WhichDocument", doc_id)
    else:
        assert outcome.signature is not None
        sig_obj = element(resp, DSS, "SignatureObject")
        b64 = element(sig_obj, DSS, "Base64Signature", base64.b64encode(outcome.signature).decode("ascii"))
        b64.set("Type", CADES)


def _fresh_id(used: set[str]) -> str:
    while True:
        candidate = "Doc-" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
        if candidate not in used:
            return candidate


# Operation element → handler; the service's namespace decides which endpoint may receive it.
HANDLERS: dict[str, Handler] = {
    q(EVT, "GetCards"): get_cards,
    q(CARD, "GetPinStatus"): get_pin_status,
    q(CARD, "VerifyPin"): verify_pin,
    q(CERT, "ReadCardCertificate"): read_card_certificate,
    **{q(ns, "GetJobNumber"): get_job_number for ns in (SIG_V75, SIG_V74)},
    **{q(ns, "SignDocument"): sign_document for ns in (SIG_V75, SIG_V74)},
    **{q(ns, "StopSignature"): stop_signature for ns in (SIG_V75, SIG_V74)},
}
