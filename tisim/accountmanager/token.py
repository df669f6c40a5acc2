"""The Account Manager's check of the bearer JWT (KOM-LE-A_2187): signed by an SMC-B's AUT key through the Konnektor.

Accepted: a compact JWS whose header names ``BP256R1``/``ES256`` (ECDSA, r||s) or ``PS256`` (RSASSA-PSS) and
carries the signer's certificate in ``x5c``; the certificate must chain to tisim's SMC-B CA and be valid now
(tisim.konnektor.pki), the signature must match it; ``aud`` must name this Account Manager, ``exp`` lie in the
future, ``iat``/``nbf`` not in the future (60 s leeway), and the lifetime stay within ``jwtExpiration``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tisim.konnektor.pki import CertificateRejected, verify_auth_signature, verify_card_certificate

LEEWAY = 60
_ECDSA = ("BP256R1", "ES256")
_RSA = ("PS256",)


class TokenRejected(Exception):
    """Why the token is refused (English, for the log and the error body)."""


@dataclass(frozen=True)
class VerifiedToken:
    telematik_id: str
    holder: str
    claims: dict[str, Any]


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected(f"not base64url: {exc}") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenRejected(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TokenRejected(f"{what} is not a JSON object")
    return value


def telematik_id_of(cert: x509.Certificate) -> str:
    try:
        admissions = cert.extensions.get_extension_for_class(x509.Admissions).value
    except x509.ExtensionNotFound:
        return ""
    for admission in admissions:
        for info in admission.profession_infos:
            if info.registration_number:
                return str(info.registration_number)
    return ""


def _number(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"claim {name} missing or not a number")
    return int(value)


def verify_token(
    token: str, *, pki_data_dir: Path, audiences: set[str], max_lifetime: int, now: dt.datetime | None = None
) -> VerifiedToken:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenRejected("not a compact JWS")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "claims")
    signature = _b64url(parts[2])
    alg = header.get("alg")
    if alg not in _ECDSA + _RSA:
        raise TokenRejected(f"alg {alg!r} not accepted")
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise TokenRejected("x5c missing")
    try:
        cert_der = base64.b64decode(chain[0], validate=True)
    except (binascii.Error, ValueError):
        raise TokenRejected("x5c[0] is not base64") from None
    moment = now or dt.datetime.now(dt.UTC)
    try:
        cert = verify_card_certificate(cert_der, pki_data_dir, at=moment)
    except CertificateRejected as exc:
        raise TokenRejected(f"certificate: {exc}") from None
    key = cert.public_key()
    if (alg in _ECDSA) != isinstance(key, ec.EllipticCurvePublicKey) or (
        alg in _RSA and not isinstance(key, rsa.RSAPublicKey)
    ):
        raise TokenRejected(f"alg {alg} does not fit the certificate's key")
    digest = hashlib.sha256(f"{parts[0]}.{parts[1]}".encode("ascii")).digest()
    try:
        verify_auth_signature(cert_der, digest, signature)
    except CertificateRejected as exc:
        raise TokenRejected(f"signature: {exc}") from None
    stamp = int(moment.timestamp())
    expires = _number(claims, "exp")
    issued = _number(claims, "iat")
    if expires <= stamp:
        raise TokenRejected("token expired")
    not_before = _number(claims, "nbf") if "nbf" in claims else issued
    if max(issued, not_before) > stamp + LEEWAY:
        raise TokenRejected("token not valid yet")
    if expires - issued > max_lifetime:
        raise TokenRejected(f"lifetime {expires - issued} s exceeds jwtExpiration {max_lifetime} s")
    audience = claims.get("aud")
    named = {audience} if isinstance(audience, str) else set(audience) if isinstance(audience, list) else set()
    if not {a.rstrip("/") for a in named if isinstance(a, str)} & audiences:
        raise TokenRejected(f"audience {audience!r} is not this Account Manager")
    telematik_id = telematik_id_of(cert)
    if not telematik_id:
        raise TokenRejected("certificate carries no Telematik-ID")
    if claims.get("sub") not in (None, "", telematik_id):
        raise TokenRejected("sub does not match the certificate's Telematik-ID")
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return VerifiedToken(telematik_id, str(names[0].value) if names else "", claims)
