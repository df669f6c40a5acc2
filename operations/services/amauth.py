"""Authentication at the KIM Account Manager: a JWT signed with the SMC-B's AUT key through the Konnektor.

KOM-LE-A_2187 binds the Account Manager's calls to the institution's card: the client builds a compact JWS whose
header carries the SMC-B's C.AUT certificate (``x5c``) and lets the card sign it (Konnektor
AuthSignatureService.ExternalAuthenticate over the SHA-256 of the signing input). gematik's exact claim set
(gemSpec_CM_KOMLE §3.7.1) was not available (research/kim-protocol.md §7); the portal sends the registered claims a
verifier needs: ``iss`` (the client system), ``sub`` (the card's Telematik-ID), ``aud`` (the Account Manager's
origin), ``iat``/``nbf``/``exp`` (a short lifetime within ServiceInformation's ``jwtExpiration``) and ``jti``.

A token is cached per (Konnektor, call context, card, audience) until shortly before it expires: every card
operation is a Konnektor round trip, and an administrator's page makes several Account Manager calls at once.

:func:`account_manager_client` is what views and services call: the client for one mailbox's KIM account, its
URL and CA from the settings (``KIMPORTAL_ACCOUNT_MANAGER_*``; a per-account URL may be passed in).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from django.conf import settings
from django.utils.translation import gettext_lazy

from kimportal.texts import N_
from konnektor import CallContext, KonnektorClient, KonnektorError, telematik_id_of
from operations.clients.accountmanager import AccountManagerClient, AccountManagerConfig, AccountManagerError
from signing.texts import konnektor_stored

if TYPE_CHECKING:
    from mailbox.models import KimAccount

# Seconds a token lives (gematik allows 300–21600 via jwtExpiration) and how long before its end a new one is made.
DEFAULT_LIFETIME = 300
RENEW_BEFORE = 30
# JWS "alg" per key type: brainpoolP256r1 ECDSA as gematik names it (the TI's IDP tokens), RSASSA-PSS for RSA cards.
ALG_BRAINPOOL = "BP256R1"
ALG_P256 = "ES256"
ALG_RSA_PSS = "PS256"

NO_SMCB_TEXT = gettext_lazy(
    "Im Konnektor ist keine SMC-B für diesen Kontext gesteckt; der Account Manager verlangt ihre Signatur."
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_algorithm(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return ALG_RSA_PSS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ALG_P256 if isinstance(key.curve, ec.SECP256R1) else ALG_BRAINPOOL
    raise ValueError(f"unsupported key type {type(key).__name__}")


def _plain_ecdsa(signature: bytes, cert: x509.Certificate) -> bytes:
    """JWS wants r||s; a Konnektor answers r||s already, a DER SEQUENCE is converted just in case."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return signature
    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size:
        return signature
    r, s = utils.decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def build_jwt(
    *,
    certificate_der: bytes,
    sign_digest: Callable[[bytes], bytes],
    audience: str,
    issuer: str,
    lifetime: int = DEFAULT_LIFETIME,
    now: float | None = None,
) -> tuple[str, float]:
    """A compact JWS and its expiry (unix time). ``sign_digest`` gets the SHA-256 of the signing input and
    returns the card's signature (ExternalAuthenticate)."""
    cert = x509.load_der_x509_certificate(certificate_der)
    issued = int(now if now is not None else time.time())
    header = {"alg": jws_algorithm(cert), "typ": "JWT", "x5c": [base64.b64encode(certificate_der).decode("ascii")]}
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": telematik_id_of(certificate_der) or "",
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": str(uuid.uuid4()),
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = _plain_ecdsa(sign_digest(hashlib.sha256(signing_input.encode("ascii")).digest()), cert)
    return f"{signing_input}.{_b64url(signature)}", float(issued + lifetime)


@dataclass(frozen=True)
class _Key:
    konnektor: str
    mandant: str
    client_system: str
    workplace: str
    iccsn: str
    audience: str


_cache: dict[_Key, tuple[str, float]] = {}
_cache_lock = threading.Lock()


def clear_token_cache() -> None:
    with _cache_lock:
        _cache.clear()


class SmcbTokenProvider:
    """Callable returning a JWT for the SMC-B seen in ``ctx`` (the one with ``iccsn`` if given), cached until
    ``RENEW_BEFORE`` seconds before its expiry. Konnektor failures surface as AccountManagerError (code
    "konnektor") with the Konnektor's German text (gettext: in the active language)."""

    def __init__(
        self,
        *,
        konnektor: Callable[[], KonnektorClient],
        konnektor_url: str,
        ctx: CallContext,
        audience: str,
        iccsn: str = "",
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._konnektor = konnektor
        self._ctx = ctx
        self._audience = audience
        self._iccsn = iccsn
        self._lifetime = lifetime
        self._clock = clock
        self._key = _Key(konnektor_url, ctx.mandant_id, ctx.client_system_id, ctx.workplace_id, iccsn, audience)

    def __call__(self) -> str:
        now = self._clock()
        with _cache_lock:
            cached = _cache.get(self._key)
            if cached is not None and cached[1] - RENEW_BEFORE > now:
                return cached[0]
        token, expires = self._new_token(now)
        with _cache_lock:
            _cache[self._key] = (token, expires)
        return token

    def _new_token(self, now: float) -> tuple[str, float]:
        try:
            with self._konnektor() as client:
                cards = client.get_cards(self._ctx, card_type="SMC-B")
                if self._iccsn:
                    cards = [c for c in cards if c.iccsn == self._iccsn]
                if not cards:
                    raise AccountManagerError(None, "no_smcb", NO_SMCB_TEXT)
                handle = cards[0].card_handle
                cert_der, crypt = _read_aut_certificate(client, self._ctx, handle)
                return build_jwt(
                    certificate_der=cert_der,
                    sign_digest=lambda digest: client.external_authenticate(self._ctx, handle, digest, crypt=crypt),
                    audience=self._audience,
                    issuer=self._ctx.client_system_id,
                    lifetime=self._lifetime,
                    now=now,
                )
        except KonnektorError as exc:
            raise AccountManagerError(
                None,
                "konnektor",
                # The Konnektor's reason kept translatable where the portal has its own text for its code.
                N_("Authentisierung mit der SMC-B fehlgeschlagen: %(reason)s")
                % {"reason": konnektor_stored(exc.code, exc.text)},
                detail=repr(exc),
            ) from exc


def _read_aut_certificate(client: KonnektorClient, ctx: CallContext, handle: str) -> tuple[bytes, str]:
    """The C.AUT certificate and its Crypt: ECC (brainpoolP256r1) first as the TI prefers it, RSA when the card
    has no ECC key (4258)."""
    try:
        return client.read_card_certificate(ctx, handle, "C.AUT", "ECC"), "ECC"
    except KonnektorError as exc:
        if exc.code != 4258:
            raise
    return client.read_card_certificate(ctx, handle, "C.AUT", "RSA"), "RSA"


# --- configuration ----------------------------------------------------------------------------------------------


def account_manager_config(*, base_url: str | None = None) -> AccountManagerConfig:
    """The Account Manager as the settings describe it (``base_url`` overrides the URL, e.g. per account)."""
    ca_path = settings.KIMPORTAL_ACCOUNT_MANAGER_CA
    return AccountManagerConfig(
        base_url=base_url or settings.KIMPORTAL_ACCOUNT_MANAGER_URL,
        ca_pem=Path(ca_path).read_bytes() if ca_path else None,
        timeout=settings.KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT,
        user_agent=settings.KIMPORTAL_TI_USER_AGENT,
    )


def account_call_context(account: KimAccount) -> CallContext:
    """The mailbox's Konnektor context (its own Mandant/Clientsystem/Arbeitsplatz, the settings' when empty)."""
    return CallContext(
        mandant_id=account.mandant_id or settings.KIMPORTAL_KONNEKTOR_MANDANT,
        client_system_id=account.client_system_id or settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM,
        workplace_id=account.workplace_id,
    )


def account_manager_client(
    account: KimAccount, *, base_url: str | None = None, session: requests.Session | None = None
) -> AccountManagerClient:
    """The Account Manager client for one mailbox's KIM account: its address and (decrypted) password, a JWT
    signed by the SMC-B in the account's Konnektor context. Close it (or use ``with``) when done. ``session``: the
    HTTP session to use (tests pass one that checks every exchange against the OpenAPI files)."""
    from signing.services.konnektor import konnektor_client

    config = account_manager_config(base_url=base_url)
    provider = SmcbTokenProvider(
        konnektor=konnektor_client,
        konnektor_url=settings.KIMPORTAL_KONNEKTOR_URL,
        ctx=account_call_context(account),
        audience=config.audience,
        iccsn=settings.KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN,
        lifetime=settings.KIMPORTAL_ACCOUNT_MANAGER_JWT_SECONDS,
    )
    return AccountManagerClient(
        config,
        username=account.mailbox.address,
        password=account.get_password(),
        token_provider=provider,
        session=session,
    )
