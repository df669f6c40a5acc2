"""Real signatures made with the simulated cards' software keys.

CAdES: a CMS SignedData (RFC 5652) assembled with asn1crypto and signed with cryptography — signed
attributes content-type, signing-time, message-digest, ESS signing-certificate-v2 (what makes CMS a
CAdES-BES) and content-hints carrying the ShortText, as the Konnektor embeds it (TUC_KON_155).
Detached unless IncludeEContent asks for the document inside.

PAdES: pyhanko signs the PDF incrementally (subfilter ETSI.CAdES.detached) with the ShortText as Reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from io import BytesIO

from asn1crypto import algos, cms, core, keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tisim.konnektor.pki import Issued

OID_CONTENT_HINTS = "1.2.840.113549.1.9.16.2.4"


class _ContentHints(core.Sequence):  # type: ignore[misc]
    # RFC 2634: ContentHints ::= SEQUENCE { contentDescription UTF8String OPTIONAL, contentType OBJECT IDENTIFIER }
    _fields = [
        ("content_description", core.UTF8String, {"optional": True}),
        ("content_type", cms.ContentType),
    ]


def cades(content: bytes, signer: Issued, *, short_text: str, include_content: bool = False) -> bytes:
    """DER of a CMS ContentInfo(SignedData) over ``content``."""
    cert = asn1_x509.Certificate.load(signer.cert_der)
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": dt.datetime.now(dt.UTC)})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute(
                {
                    "type": "signing_certificate_v2",
                    "values": [
                        tsp.SigningCertificateV2(
                            {
                                "certs": [
                                    tsp.ESSCertIDv2(
                                        {
                                            "hash_algorithm": {"algorithm": "sha256"},
                                            "cert_hash": hashlib.sha256(signer.cert_der).digest(),
                                            "issuer_serial": {
                                                "issuer": [asn1_x509.GeneralName({"directory_name": cert.issuer})],
                                                "serial_number": cert.serial_number,
                                            },
                                        }
                                    )
                                ]
                            }
                        )
                    ],
                }
            ),
            cms.CMSAttribute(
                {
                    "type": OID_CONTENT_HINTS,
                    "values": [_ContentHints({"content_description": short_text, "content_type": "data"})],
                }
            ),
        ]
    )
    # The signature covers the DER of the attributes as a SET OF (tag 0x31), not the [0] IMPLICIT form.
    to_sign = signed_attrs.dump()
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}}
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": signature_algorithm,
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data", "content": content if include_content else None},
            "certificates": [cert],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def pades(pdf: bytes, signer: Issued, ca: Issued, *, short_text: str) -> bytes:
    """The PDF with an added PAdES signature (incremental update; the original bytes stay a prefix)."""
    # Imported here: pyhanko is heavy and only PAdES needs it.
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    key_der = signer.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pdf_signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(signer.cert_der),
        signing_key=keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs(
            [  # type: ignore[no-untyped-call]
                asn1_x509.Certificate.load(ca.cert_der)
            ]
        ),
    )
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name=_free_field_name(writer),
        reason=short_text or None,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
    )
    out = signers.sign_pdf(writer, meta, signer=pdf_signer)
    return bytes(out.getvalue())


def _free_field_name(writer: object) -> str:
    from pyhanko.sign import fields

    taken = {name for name, _value, _ref in fields.enumerate_sig_fields(writer)}  # type: ignore[arg-type]
    n = 1
    while f"Signatur{n}" in taken:
        n += 1
    return f"Signatur{n}"
