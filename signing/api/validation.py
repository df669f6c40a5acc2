"""A submission as the KIS sends it (JSON, the document in base64), checked field by field into the portal's
own terms: a DraftData for the draft services, the author, the checked document and the submission's digest.

Checked here, before anything is stored; every refusal is an ApiError with a stable code and a German text."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from mailbox.models import Mailbox
from mailbox.permissions import Action, user_role
from mailbox.permissions import can as role_can
from signing.api.errors import ApiError
from signing.doctypes import document_type
from signing.forms import KIM_DOMAINS
from signing.models import KisClient, SignerCard
from signing.permissions import may_sign_for
from signing.services.documents import (
    BIDI_CONTROLS,
    CheckedDocument,
    DocumentRejected,
    document_check,
    max_document_bytes,
)
from signing.services.drafts import DraftData

logger = logging.getLogger(__name__)

# The KIS's own document id: it is part of the URL, so one path segment of plain characters.
DOCUMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
DOCUMENT_ID_PATTERN = DOCUMENT_ID.pattern
MAX_BODY_CHARS = 100_000
MAX_RECIPIENTS = 50
MAX_REASON_CHARS = 2000
# Room for the metadata next to the base64 document in one request body.
METADATA_BYTES = 256 * 1024


def max_request_bytes() -> int:
    """The largest request body: the largest document in base64 (4 characters per 3 bytes) and its metadata."""
    return (max_document_bytes() + 2) // 3 * 4 + METADATA_BYTES


@dataclass(frozen=True)
class Submission:
    document_id: str
    data: DraftData
    author: Any
    document: CheckedDocument
    digest: str


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: "[[[[…" nested deeper than the parser goes is a hostile body, not a server error.
        raise ApiError(400, "invalid_json", _("Der Inhalt ist kein gültiges JSON (UTF-8).")) from exc
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", _("Erwartet wird ein JSON-Objekt."))
    _characters_check(value)
    return value


# "\u0000" and a lone "\ud800" are valid JSON escapes, but no text the portal keeps: PostgreSQL refuses NUL in
# text and UTF-8 has no surrogates. Refused up front for every field (the free texts too), not as a server error.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _characters_check(body: dict[str, Any]) -> None:
    """Every string in the body, keys included, without NUL or a lone surrogate; walked without recursion (the
    parser lets through nesting as deep as Python's own limit)."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if UNSTORABLE.search(key):
                    raise _unstorable(path)
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((path, item) for item in value)
        elif isinstance(value, str) and UNSTORABLE.search(value):
            raise _unstorable(path)


def _unstorable(path: str) -> ApiError:
    if not path:
        return ApiError(
            400, "invalid_json", _("Der Inhalt enthält ein Nullzeichen oder ein ungültiges Unicode-Zeichen.")
        )
    return ApiError(
        400,
        "invalid_field",
        _("Das Feld „%(field)s“ enthält ein Nullzeichen oder ein ungültiges Unicode-Zeichen.") % {"field": path},
        field=path,
    )


def _missing(name: str) -> ApiError:
    return ApiError(400, "missing_field", _("Das Feld „%(field)s“ fehlt.") % {"field": name}, field=name)


def _wrong_type(name: str, kind: str) -> ApiError:
    return ApiError(
        400,
        "invalid_field",
        _("Das Feld „%(field)s“ muss %(kind)s sein.") % {"field": name, "kind": kind},
        field=name,
    )


def _string(body: dict[str, Any], name: str, *, max_length: int, required: bool = True, one_line: bool = True) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return ""
    if not isinstance(value, str):
        raise _wrong_type(name, _("eine Zeichenkette"))
    value = value.strip() if one_line else value
    if required and not value:
        raise ApiError(400, "invalid_field", _("Das Feld „%(field)s“ ist leer.") % {"field": name}, field=name)
    if len(value) > max_length:
        raise ApiError(
            400,
            "invalid_field",
            _("Das Feld „%(field)s“ ist zu lang (höchstens %(max)s Zeichen).") % {"field": name, "max": max_length},
            field=name,
        )
    # Subject and patient become a mail header and a list row: no line breaks, no control characters, no direction
    # overrides (the row would show another name than the one stored).
    if one_line and any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS for ch in value):
        raise ApiError(
            400,
            "invalid_field",
            _("Das Feld „%(field)s“ darf keine Zeilenumbrüche oder Steuerzeichen enthalten.") % {"field": name},
            field=name,
        )
    return value


def document_id_check(value: Any, name: str = "document_id") -> str:
    if value is None:
        raise _missing(name)
    if not isinstance(value, str) or not DOCUMENT_ID.fullmatch(value):
        raise ApiError(
            400,
            "invalid_field",
            _(
                "Die Dokument-ID des KIS besteht aus 1 bis 100 Zeichen: Buchstaben, Ziffern und . _ : - "
                "(beginnend mit einem Buchstaben oder einer Ziffer)."
            ),
            field=name,
        )
    return value


def _mailbox(client: KisClient, body: dict[str, Any]) -> Mailbox:
    address = _string(body, "mailbox", max_length=254)
    found = client.mailboxes.filter(address__iexact=address, is_active=True).first()
    if found is None:
        # Unknown or outside the scope alike: a client learns nothing about mailboxes it may not use.
        raise ApiError(
            403,
            "mailbox_not_allowed",
            _("Für das Postfach „%(mailbox)s“ ist diese KIS-Anbindung nicht freigegeben.") % {"mailbox": address},
            field="mailbox",
        )
    return found


def _user(username: str) -> Any:
    return get_user_model().objects.filter(username=username, is_active=True).first()


# An unsaved stand-in no row has (ids start at 1): asked for its role, it costs the same query a real user's does.
_NOBODY_PK = 0


def _refused_person(code: str, detail: str, *, field: str, reason: str, name: str) -> ApiError:
    """One refusal for "no such active person" and "that person may not": the caller (a KIS) must not learn
    which usernames exist. The administrators' log and the audit trail keep the precise reason."""
    logger.info("KIS API: %s refused (%s) for %r", field, reason, name[:150])
    return ApiError(422, code, detail, field=field, reason=reason)


def _signer(body: dict[str, Any], mailbox: Mailbox) -> Any:
    value = body.get("signer")
    if value is None:
        raise _missing("signer")
    if not isinstance(value, dict):
        raise _wrong_type("signer", _("ein Objekt mit „username“ oder „telematik_id“"))
    keys = set(value) & {"username", "telematik_id"}
    if len(keys) != 1 or set(value) - keys or not isinstance(value[next(iter(keys))], str):
        raise ApiError(
            400,
            "invalid_field",
            _("Der Unterzeichner wird entweder mit „username“ oder mit „telematik_id“ angegeben (genau eines)."),
            field="signer",
        )
    key = next(iter(keys))
    name = value[key].strip()
    # One query for both halves (an active person, with an eHBA): unknown and without eHBA cost the same.
    cards = SignerCard.objects.select_related("user").filter(user__is_active=True)
    card = (cards.filter(user__username=name) if key == "username" else cards.filter(telematik_id=name)).first()
    if card is not None and may_sign_for(card.user, mailbox.pk):
        return card.user
    # Unknown, without an eHBA, or not a physician of this mailbox: one answer for all three, so a KIS cannot
    # probe which usernames (or Telematik-IDs) exist; one more query on each way, for the administrators' reason.
    if card is not None:
        reason = "signer_not_allowed"
    elif key == "username":
        reason = "signer_without_ehba" if _user(name) is not None else "signer_unknown"
    else:
        reason = "signer_unknown"
        SignerCard.objects.filter(telematik_id=name).exists()  # the same number of queries as the other ways
    raise _refused_person(
        "unknown_signer",
        _(
            "Unter „%(name)s“ gibt es im Portal keine aktive Person mit zugeordnetem eHBA, die für das Postfach "
            "%(mailbox)s signieren darf (Mitglied mit mindestens der Rolle „Bearbeiten“)."
        )
        % {"name": value[key], "mailbox": mailbox.address},
        field="signer",
        reason=reason,
        name=name,
    )


def _author(body: dict[str, Any], mailbox: Mailbox) -> Any:
    username = _string(body, "author", max_length=150)
    user = _user(username)
    # An unknown name is asked for its role like a known one (a stand-in that has none), so that both answers
    # below take the same work, not only the same words.
    role = user_role(user if user is not None else get_user_model()(pk=_NOBODY_PK, is_active=True), mailbox)
    if user is None or not role_can(role, Action.PROCESS):
        raise _refused_person(
            "author_not_allowed",
            _("Eine aktive Person „%(name)s“, die aus dem Postfach „%(mailbox)s“ senden darf, gibt es im Portal nicht.")
            % {"name": username, "mailbox": mailbox.address},
            field="author",
            reason="author_unknown" if user is None else "author_without_right",
            name=username,
        )
    return user


def _recipients(body: dict[str, Any]) -> list[str]:
    value = body.get("recipients")
    if value is None:
        raise _missing("recipients")
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _wrong_type("recipients", _("eine Liste von KIM-Adressen"))
    addresses = [a.strip() for a in value if a.strip()]
    if not addresses:
        raise ApiError(400, "invalid_field", _("Bitte mindestens eine KIM-Adresse angeben."), field="recipients")
    if len(addresses) > MAX_RECIPIENTS:
        raise ApiError(
            400,
            "invalid_field",
            _("Höchstens %(max)s Empfänger je Entwurf.") % {"max": MAX_RECIPIENTS},
            field="recipients",
        )
    wrong = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            wrong.append(address)
            continue
        if not address.lower().endswith(KIM_DOMAINS):
            wrong.append(address)
    if wrong:
        raise ApiError(
            422,
            "invalid_recipient",
            _("Keine gültige KIM-Adresse: %(addresses)s") % {"addresses": ", ".join(wrong)},
            field="recipients",
        )
    return list(dict.fromkeys(addresses))


def _document(body: dict[str, Any]) -> CheckedDocument:
    value = body.get("document")
    if value is None:
        raise _missing("document")
    if not isinstance(value, dict):
        raise _wrong_type("document", _("ein Objekt mit „filename“ und „content_base64“"))
    filename = value.get("filename")
    content = value.get("content_base64")
    if not isinstance(filename, str) or not filename.strip():
        raise ApiError(400, "invalid_field", _("Der Dateiname des Dokuments fehlt."), field="document.filename")
    if not isinstance(content, str):
        raise ApiError(
            400, "invalid_field", _("Der Inhalt des Dokuments fehlt (base64)."), field="document.content_base64"
        )
    # Asked before decoding: an oversized document never becomes worker memory twice.
    if len(content) > (max_document_bytes() + 2) // 3 * 4 + 4:
        raise _too_big()
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(
            400,
            "invalid_base64",
            _("Der Inhalt des Dokuments ist kein gültiges base64."),
            field="document.content_base64",
        ) from exc
    if len(raw) > max_document_bytes():
        raise _too_big()
    try:
        return document_check(raw, filename)
    except DocumentRejected as exc:
        raise ApiError(422, "document_rejected", exc.message, field="document") from exc


def _too_big() -> ApiError:
    return ApiError(
        413,
        "document_too_large",
        _("Das Dokument ist zu groß; erlaubt sind höchstens %(limit)s MB.")
        % {"limit": round(max_document_bytes() / 2**20, 1)},
        field="document",
    )


def submission_parse(client: KisClient, body: dict[str, Any], *, document_id: str | None = None) -> Submission:
    """The submission in ``body`` (for a replacement, ``document_id`` comes from the URL; one in the body must
    be the same). Checks in the order a caller fixes them: shape first, then what the portal knows."""
    if document_id is None:
        document_id = document_id_check(body.get("document_id"))
    elif "document_id" in body and body["document_id"] != document_id:
        raise ApiError(
            400,
            "invalid_field",
            _("Die Dokument-ID im Inhalt weicht von der in der Adresse ab."),
            field="document_id",
        )
    code = _string(body, "document_type", max_length=30)
    patient = _string(body, "patient_reference", max_length=100)
    subject = _string(body, "subject", max_length=200)
    text = _string(body, "body", max_length=MAX_BODY_CHARS, required=False, one_line=False)
    recipients = _recipients(body)
    mailbox = _mailbox(client, body)
    if document_type(code) is None:
        raise ApiError(
            422,
            "unknown_document_type",
            _("Den Dokumenttyp „%(code)s“ kennt das Portal nicht.") % {"code": code},
            field="document_type",
        )
    signer = _signer(body, mailbox)
    author = _author(body, mailbox)
    document = _document(body)
    data = DraftData(
        document_type=code,
        patient_reference=patient,
        signer=signer,
        mailbox=mailbox,
        subject=subject,
        body=text,
        recipients=recipients,
    )
    return Submission(
        document_id=document_id,
        data=data,
        author=author,
        document=document,
        digest=submission_digest(data, author, document),
    )


def submission_digest(data: DraftData, author: Any, document: CheckedDocument) -> str:
    """What makes two submissions the same: the metadata as the portal understood it and the document's bytes."""
    canonical = {
        "document_type": data.document_type,
        "patient_reference": data.patient_reference,
        "signer": data.signer.pk,
        "mailbox": data.mailbox.pk,
        "subject": data.subject,
        "body": data.body,
        "recipients": list(data.recipients),
        "author": author.pk,
        "filename": document.filename,
        "document": hashlib.sha256(document.content).hexdigest(),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def reason_parse(body: dict[str, Any]) -> str:
    return _string(body, "reason", max_length=MAX_REASON_CHARS, required=False, one_line=False).strip()


def expected_version_parse(body: dict[str, Any]) -> int | None:
    value = body.get("expected_version")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _wrong_type("expected_version", _("eine positive ganze Zahl"))
    return value
