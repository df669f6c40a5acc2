"""The arguments of each SOAP operation, as zeep takes them (keyword arguments of the operation).

Kept apart from the client so that tests can render every request the client sends and validate it against the
official gematik schemas without a Konnektor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .text import short_text
from .types import CADES, PADES, CallContext, SignItem


def context(ctx: CallContext) -> dict[str, str]:
    values = {
        "MandantId": ctx.mandant_id,
        "ClientSystemId": ctx.client_system_id,
        "WorkplaceId": ctx.workplace_id,
    }
    if ctx.user_id:
        values["UserId"] = ctx.user_id
    return values


def get_cards(ctx: CallContext, card_type: str) -> dict[str, Any]:
    args: dict[str, Any] = {"Context": context(ctx)}
    if card_type:
        args["CardType"] = card_type
    return args


def read_card_certificate(ctx: CallContext, card_handle: str, crypt: str | None) -> dict[str, Any]:
    """ReadCardCertificate of the card's C.QES certificate."""
    return read_card_certificates(ctx, card_handle, "C.QES", crypt)


def pin(ctx: CallContext, card_handle: str, pin_ref: str) -> dict[str, Any]:
    """GetPinStatus and VerifyPin."""
    return {"Context": context(ctx), "CardHandle": card_handle, "PinTyp": pin_ref}


def get_job_number(ctx: CallContext) -> dict[str, Any]:
    return {"Context": context(ctx)}


def stop_signature(ctx: CallContext, job_number: str) -> dict[str, Any]:
    return {"Context": context(ctx), "JobNumber": job_number}


def sign_document(
    ctx: CallContext, card_handle: str, job_number: str, items: Sequence[SignItem], *, crypt: str | None
) -> dict[str, Any]:
    args: dict[str, Any] = {"CardHandle": card_handle}
    # Crypt came with SignatureService 7.4.2; the caller leaves it out for a 7.4.0 Konnektor, which would reject
    # the element as a syntax error.
    if crypt:
        args["Crypt"] = crypt
    args.update(
        {
            "Context": context(ctx),
            # No trusted viewer: the portal shows the documents itself before signing.
            "TvMode": "NONE",
            "JobNumber": job_number,
            "SignRequest": [sign_request(index, item) for index, item in enumerate(items, start=1)],
        }
    )
    return args


def sign_request(index: int, item: SignItem) -> dict[str, Any]:
    if item.pades:
        optional: dict[str, Any] = {"SignatureType": PADES}
    else:
        # Detached CAdES: the document stays outside the CMS.
        optional = {"SignatureType": CADES, "IncludeEContent": False}
    return {
        "RequestID": item.request_id,
        "OptionalInputs": optional,
        "Document": {
            "ID": f"doc{index}",
            "ShortText": short_text(item.short_text),
            "Base64Data": {"_value_1": item.content, "MimeType": item.mime_type},
        },
        # QES: the Konnektor embeds the OCSP answer (gemILF_PS: must be true for QES).
        "IncludeRevocationInfo": True,
    }


# SignatureType of ExternalAuthenticate (AuthSignatureService 7.4.1): ECDSA (BSI TR-03111) or RSA (RFC 3447).
ECDSA = "urn:bsi:tr:03111:ecdsa"
RSA = "urn:ietf:rfc:3447"
REPORT_ALL_DETAILS = "urn:oasis:names:tc:dss:1.0:profiles:verificationreport:reportdetail:allDetails"


def read_card_certificates(ctx: CallContext, card_handle: str, cert_ref: str, crypt: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "CardHandle": card_handle,
        "Context": context(ctx),
        "CertRefList": {"CertRef": [cert_ref]},
    }
    if crypt:
        args["Crypt"] = crypt
    return args


def verify_document(
    ctx: CallContext, *, signature: bytes | None, document: bytes | None, mime_type: str
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "Context": context(ctx),
        "TvMode": "NONE",
        # The report names the signer (with the certificate itself) and the signing time.
        "OptionalInputs": {
            "ReturnVerificationReport": {
                "IncludeVerifier": False,
                "IncludeCertificateValues": True,
                "ReportDetailLevel": REPORT_ALL_DETAILS,
            }
        },
    }
    if document is not None:
        args["Document"] = {"Base64Data": {"_value_1": document, "MimeType": mime_type}}
    if signature is not None:
        args["SignatureObject"] = {"Base64Signature": {"_value_1": signature, "Type": CADES}}
    # Nothing to embed: the portal checks, it does not update the signature.
    args["IncludeRevocationInfo"] = False
    return args


def card_and_context(ctx: CallContext, card_handle: str) -> dict[str, Any]:
    """ActivateComfortSignature and GetSignatureMode."""
    return {"CardHandle": card_handle, "Context": context(ctx)}


def deactivate_comfort_signature(card_handles: Sequence[str]) -> dict[str, Any]:
    # No Context: deactivation closes every Komfortsignatur session of the cards.
    return {"CardHandle": list(card_handles)}


def external_authenticate(ctx: CallContext, card_handle: str, data: bytes, *, crypt: str) -> dict[str, Any]:
    if crypt == "ECC":
        optional: dict[str, Any] = {"SignatureType": ECDSA}
    else:
        optional = {"SignatureType": RSA, "SignatureSchemes": "RSASSA-PSS"}
    return {
        "CardHandle": card_handle,
        "Context": context(ctx),
        "OptionalInputs": optional,
        "BinaryString": {"Base64Data": {"_value_1": data, "MimeType": "application/octet-stream"}},
    }
