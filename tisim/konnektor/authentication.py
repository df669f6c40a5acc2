"""AuthSignatureService 7.4.1: ExternalAuthenticate — the SMC-B's C.AUT key signs a digest (e.g. a JWT for the
KIM Account Manager, a challenge for a TLS-like login).

SignatureType ``urn:bsi:tr:03111:ecdsa``: ECDSA with the ECC AUT key, the signature in plain format r||s (BSI
TR-03111); ``urn:ietf:rfc:3447`` (the default): RSA with the RSA AUT key, RSASSA-PSS unless SignatureSchemes asks
for RSASSA-PKCS1-v1_5. The data is a SHA-256 digest (32 bytes), signed as such (no second hash).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from tisim.konnektor.operations import card_from, check_context
from tisim.konnektor.soap import (
    DSS,
    SIG_V74,
    KonnektorFault,
    child,
    element,
    parse_context,
    q,
    status,
    text_of,
)

if TYPE_CHECKING:
    from tisim.konnektor.simulator import KonnektorSimulator

ECDSA = "urn:bsi:tr:03111:ecdsa"
RSA = "urn:ietf:rfc:3447"
DIGEST_BYTES = 32


def external_authenticate(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card)
    if not card.aut_keys:
        # The simulated eHBA carries no C.HP.AUT: only the SMC-B authenticates here.
        raise KonnektorFault(4209, f"{card.card_type}: ExternalAuthenticate nur mit SMC-B")
    inputs = child(op, SIG_V74, "OptionalInputs")
    signature_type = (text_of(inputs, DSS, "SignatureType") if inputs is not None else None) or RSA
    scheme = (text_of(inputs, SIG_V74, "SignatureSchemes") if inputs is not None else None) or "RSASSA-PSS"
    if signature_type not in (ECDSA, RSA):
        raise KonnektorFault(4111, signature_type)
    binary = child(op, SIG_V74, "BinaryString")
    data_el = child(binary, DSS, "Base64Data") if binary is not None else None
    if data_el is None:
        raise KonnektorFault(4000, "BinaryString/Base64Data fehlt")
    try:
        data = base64.b64decode("".join((data_el.text or "").split()), validate=True)
    except binascii.Error as exc:
        raise KonnektorFault(4000, "BinaryString ist kein Base64") from exc
    if len(data) != DIGEST_BYTES:
        raise KonnektorFault(4000, f"BinaryString: ein SHA-256-Hashwert (32 Bytes) erwartet, {len(data)} Bytes")
    if sim.effective_pin_state(card) in ("BLOCKED", "TRANSPORT_PIN"):
        # The SMC-B is not unlocked: its AUT key may not be used.
        raise KonnektorFault(4085, f"PIN.SMC {card.pin_state}")
    busy = sim.take_fault("card-busy")
    if busy is not None:
        raise KonnektorFault(int(busy.params.get("code", 4060)))
    try:
        issued = card.aut_keys["ECC" if signature_type == ECDSA else "RSA"]
    except KeyError:
        raise KonnektorFault(4258 if signature_type == ECDSA else 4209, "kein passender AUT-Schlüssel") from None
    prehashed = utils.Prehashed(hashes.SHA256())
    key = issued.key
    with sim.reserve(card, "ExternalAuthenticate"):
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(prehashed)))
            size = (key.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            assert isinstance(key, rsa.RSAPrivateKey)
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if scheme == "RSASSA-PKCS1-v1_5"
                else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=DIGEST_BYTES)
            )
            signature = key.sign(data, pad, prehashed)
    response = element(None, SIG_V74, "ExternalAuthenticateResponse")
    status(response)
    sig_obj = element(response, DSS, "SignatureObject")
    element(sig_obj, DSS, "Base64Signature", base64.b64encode(signature).decode("ascii")).set("Type", signature_type)
    return response


HANDLERS = {q(SIG_V74, "ExternalAuthenticate"): external_authenticate}
