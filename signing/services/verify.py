"""Each signature the Konnektor returns is checked here before it is used: it must cover exactly the document the
physician saw, and be made with the QES certificate of the physician's own card (issued by a trusted QES CA, when
one is configured). A signature that fails is kept out: its draft stays in the queue with the reason.

CAdES and PAdES share one CMS check (`_cms_check`). For PAdES, pyhanko reads the PDF's structure (cross-reference
sections, catalog, the signature fields) and this module reads the new signature's dictionary itself: pyhanko's
own validation read the 8 KB hex string of /Contents byte by byte in Python, built a certificate path validator for
every document and compared certificate names attribute by attribute — most of the portal's work in a batch."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from django.utils.translation import gettext as _

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}

# PAdES signatures (PAdES baseline) and the older detached PKCS#7 form: both a detached CMS over the ByteRange.
# adbe.pkcs7.sha1 (a CMS over a SHA-1 digest) and ETSI.RFC3161 (a document time stamp) are no signatures to accept.
_PDF_SUBFILTERS = frozenset({"/ETSI.CAdES.detached", "/adbe.pkcs7.detached"})
_PDF_WHITESPACE = b" \t\n\r\f\x00"


class SignatureInvalid(Exception):
    """The signature does not prove what it must; the message (German) says why."""


class _NotIntact(SignatureInvalid):
    """The signed digest is not the digest of the content."""


class _NotValid(SignatureInvalid):
    """The signature value does not verify with the signer's key."""


@dataclass(frozen=True)
class Verified:
    signer_certificate: bytes  # DER


@functools.cache
def _trust(ca_pem: bytes | None) -> tuple[cx509.Certificate, ...]:
    # Cached: a batch checks up to 250 signatures against the same anchors.
    return tuple(cx509.load_pem_x509_certificates(ca_pem)) if ca_pem else ()


def _issued_by_trusted(cert: cx509.Certificate, cas: Sequence[cx509.Certificate]) -> bool:
    """Issued directly by one of the QES CAs (eHBA certificates are), both valid now, the key usable for signing.
    Revocation is the Konnektor's (IncludeRevocationInfo): no OCSP from here."""
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc or not _may_sign(cert):
        return False
    for ca in cas:
        if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _may_sign(cert: cx509.Certificate) -> bool:
    # A certificate without KeyUsage is not restricted (RFC 5280); a QES certificate carries nonRepudiation.
    try:
        usage = cert.extensions.get_extension_for_class(cx509.KeyUsage).value
    except cx509.ExtensionNotFound:
        return True
    return usage.content_commitment or usage.digital_signature


def _check_certificate(cert: cx509.Certificate, card_ders: Sequence[bytes], cas: Sequence[cx509.Certificate]) -> bytes:
    # A G2.1 card has an RSA and an ECC QES certificate (Crypt RSA_ECC signs with ECC): either is the card's.
    signer_der = cert.public_bytes(Encoding.DER)
    if signer_der not in card_ders:
        raise SignatureInvalid(_("Die Signatur wurde nicht mit dem QES-Zertifikat Ihres eHBA erstellt."))
    if cas and not _issued_by_trusted(cert, cas):
        raise SignatureInvalid(
            _("Das Signaturzertifikat stammt nicht von einer vertrauenswürdigen QES-Zertifizierungsstelle.")
        )
    return signer_der


def verify_cades_detached(
    *, document: bytes, cms_der: bytes, card_certificates: Sequence[bytes], ca_pem: bytes | None
) -> Verified:
    """A detached CMS (CAdES): the message digest is the document's, the signature over the signed attributes
    verifies with the signer certificate, and that certificate is the card's QES certificate."""
    return Verified(signer_certificate=_cms_check(cms_der, [document], card_certificates, _trust(ca_pem)))


def _cms_check(
    cms_der: bytes,
    content: Sequence[bytes | memoryview],
    card_certificates: Sequence[bytes],
    cas: Sequence[cx509.Certificate],
) -> bytes:
    """A detached CMS SignedData over ``content`` (the chunks, in order): one SignerInfo; signed attributes with
    one content type (the encapsulated one) and a message digest equal to the content's; a signing-certificate
    attribute, when present, naming the signer's certificate; the signature over the signed attributes valid with
    that certificate; the certificate one of the card's and, with QES CAs configured, trusted. The signer
    certificate (DER) is returned."""
    try:
        info = cms.ContentInfo.load(cms_der)
        signed = info["content"]
        if info["content_type"].native != "signed_data" or len(signed["signer_infos"]) != 1:
            raise SignatureInvalid(_("Die Signatur ist keine einfache CMS-Signatur."))
        if signed["encap_content_info"]["content"].native is not None:
            raise SignatureInvalid(_("Die Signatur ist nicht abgesetzt (sie enthält das Dokument)."))
        signer = signed["signer_infos"][0]
        # The certificates through cryptography: asn1crypto re-encodes a certificate once its algorithm was read.
        cert = _signer_certificate(signer["sid"].chosen, pkcs7.load_der_pkcs7_certificates(cms_der))
        if cert is None:
            raise SignatureInvalid(_("Die Signatur enthält das Zertifikat des Unterzeichners nicht."))
        digest_name = signer["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise SignatureInvalid(_("Unbekanntes Hashverfahren in der Signatur."))
        attrs = signer["signed_attrs"]
        # Signed over as a SET OF (tag 0x31), not as the [0] IMPLICIT tag it carries here: the received bytes with
        # their first byte swapped, taken before any attribute is read (asn1crypto then re-encodes them: slow, and
        # not necessarily the bytes that were signed).
        encoded = attrs.dump()
        if not attrs:
            raise SignatureInvalid(_("Die Signatur hat keine signierten Attribute."))
        by_type = _single_valued(attrs)
        content_type = by_type.get("content_type")
        if content_type is None or content_type.native != signed["encap_content_info"]["content_type"].native:
            raise SignatureInvalid(_("Die Signatur ist beschädigt und kann nicht gelesen werden."))
        _check_signing_certificate_attribute(by_type, cert)
        expected = hashlib.new(digest_name)
        for chunk in content:
            expected.update(chunk)
        message_digest = by_type.get("message_digest")
        if message_digest is None or message_digest.native != expected.digest():
            raise _NotIntact(_("Die Signatur passt nicht zum Dokument (Prüfsumme weicht ab)."))
        signed_bytes = b"\x31" + encoded[1:]
        _verify_raw(cert, signer, signed_bytes, _HASHES[digest_name])
    except SignatureInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SignatureInvalid(_("Die Signatur ist beschädigt und kann nicht gelesen werden.")) from exc
    return _check_certificate(cert, card_certificates, cas)


def _single_valued(attrs: cms.CMSAttributes) -> dict[str, Any]:
    """The signed attributes by type; each type once, with one value (RFC 5652 §11 for the ones read here)."""
    by_type: dict[str, Any] = {}
    for attr in attrs:
        name, values = attr["type"].native, attr["values"]
        if name in by_type or len(values) != 1:
            raise SignatureInvalid(_("Die Signatur ist beschädigt und kann nicht gelesen werden."))
        by_type[name] = values[0]
    return by_type


def _check_signing_certificate_attribute(by_type: dict[str, Any], cert: cx509.Certificate) -> None:
    # ESS signing-certificate(-v2) (CAdES-BES, PAdES): the signer's certificate is bound into the signature; its
    # first ESSCertID must name the certificate that verifies (hash, and issuer and serial when given).
    if "signing_certificate_v2" in by_type:
        cert_id = by_type["signing_certificate_v2"]["certs"][0]
        hash_name = cert_id["hash_algorithm"]["algorithm"].native
    elif "signing_certificate" in by_type:
        cert_id, hash_name = by_type["signing_certificate"]["certs"][0], "sha1"
    else:
        return
    matches = hashlib.new(hash_name, cert.public_bytes(Encoding.DER)).digest() == cert_id["cert_hash"].native
    issuer_serial = cert_id["issuer_serial"]
    if matches and issuer_serial.native is not None:
        names = [name.chosen.untag().dump() for name in issuer_serial["issuer"] if name.name == "directory_name"]
        matches = issuer_serial["serial_number"].native == cert.serial_number and cert.issuer.public_bytes() in names
    if not matches:
        raise SignatureInvalid(_("Die Signatur nennt ein anderes Zertifikat als das, mit dem sie erstellt wurde."))


def _signer_certificate(sid: object, certs: list[cx509.Certificate]) -> cx509.Certificate | None:
    # Issuer compared as encoded bytes (asn1crypto's Name equality normalises every attribute: slow for 250).
    if isinstance(sid, cms.IssuerAndSerialNumber):
        issuer, serial = sid["issuer"].dump(), sid["serial_number"].native
        return next((c for c in certs if c.serial_number == serial and c.issuer.public_bytes() == issuer), None)
    key_id = getattr(sid, "native", None)
    for cert in certs:
        try:
            ski = cert.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value.digest
        except cx509.ExtensionNotFound:
            continue
        if ski == key_id:
            return cert
    return None


def _verify_raw(cert: cx509.Certificate, signer: cms.SignerInfo, data: bytes, digest: hashes.HashAlgorithm) -> None:
    key = cert.public_key()
    algorithm = signer["signature_algorithm"]
    name = algorithm["algorithm"].native
    signature = signer["signature"].native
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if name == "rsassa_pss":
                params = algorithm["parameters"]
                pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]
                key.verify(
                    signature,
                    data,
                    padding.PSS(mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native),
                    pss_hash,
                )
            else:
                key.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise SignatureInvalid(_("Unbekanntes Signaturverfahren."))
    except InvalidSignature as exc:
        raise _NotValid(_("Die Signatur ist mathematisch ungültig.")) from exc


def verify_pades(
    *, document: bytes, signed_pdf: bytes, card_certificates: Sequence[bytes], ca_pem: bytes | None
) -> Verified:
    """A signed PDF (PAdES): an incremental update of exactly the document shown, with exactly one new signature;
    its /ByteRange covers the whole file but its own /Contents; the CMS in /Contents is checked as a detached
    CAdES over the covered bytes (intact, valid, made with the card's QES certificate, trusted when a QES CA is
    configured)."""
    if not signed_pdf.startswith(document):
        # The signature is appended as an incremental update: the bytes before it are the document as shown.
        raise SignatureInvalid(_("Das signierte PDF enthält nicht das unveränderte Dokument."))
    from pyhanko.pdf_utils.misc import PdfError

    damaged = _("Das signierte PDF ist beschädigt und kann nicht geprüft werden.")
    try:
        signature = _new_signature(document, signed_pdf)
        if signature is None:
            raise SignatureInvalid(_("Das signierte PDF enthält nicht genau eine neue Signatur."))
        contents_start, contents_end, byte_range = (
            signature.contents_start,
            signature.contents_end,
            signature.byte_range,
        )
        # The whole file but the hex string of this signature's own /Contents (from its '<' to its '>').
        if byte_range != [0, contents_start, contents_end, len(signed_pdf) - contents_end]:
            raise SignatureInvalid(_("Die PDF-Signatur deckt nicht das ganze Dokument ab."))
        cms_der = _cms_from_contents(signed_pdf[contents_start + 1 : contents_end - 1])
    except SignatureInvalid:
        raise
    except (PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise SignatureInvalid(damaged) from exc
    view = memoryview(signed_pdf)
    try:
        signer_der = _cms_check(
            cms_der, [view[:contents_start], view[contents_end:]], card_certificates, _trust(ca_pem)
        )
    except (_NotIntact, _NotValid) as exc:
        raise SignatureInvalid(
            _("Die PDF-Signatur ist ungültig (Dokument verändert oder Signatur fehlerhaft).")
        ) from exc
    return Verified(signer_certificate=signer_der)


@dataclass(frozen=True)
class _PdfSignature:
    byte_range: list[int]
    contents_start: int  # offset of /Contents' '<'
    contents_end: int  # offset just after its '>'


def _new_signature(document: bytes, signed_pdf: bytes) -> _PdfSignature | None:
    """The one signature the update added, or None when it added none or more than one: the filled signature
    fields of the signed PDF are those of the document and one more, whose signature dictionary is written after
    the document's bytes."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.misc import PdfReadError
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(signed_pdf), strict=False)
    if reader.encrypted:
        raise PdfReadError("encrypted")
    values = _signature_values(reader)
    if len(values) != 1 + len(_signature_values(PdfFileReader(io.BytesIO(document), strict=False))):
        return None
    added = []
    for value in values:
        if not isinstance(value, generic.IndirectObject):
            raise PdfReadError("signature dictionary is not an indirect object")
        offset = reader.xrefs[value.reference]
        if not isinstance(offset, int):  # in an object stream: its /Contents cannot be left out of a ByteRange
            raise PdfReadError("signature dictionary in an object stream")
        if offset >= len(document):
            added.append((value.reference, offset))
    if len(added) != 1:
        return None
    return _signature_dictionary(signed_pdf, *added[0], reader)


def _signature_values(reader: Any) -> list[Any]:
    """The /V of every filled signature field, not resolved: resolving reads the signature dictionary and with it
    /Contents (slow, and counting needs no more). The fields as pyhanko enumerates them: from the AcroForm's
    /Fields down /Kids, named (/T), of the field type /Sig (inherited)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.misc import PdfReadError

    try:
        fields = reader.root["/AcroForm"]["/Fields"]
    except KeyError:
        return []
    values: list[Any] = []

    def walk(field_refs: Any, field_type: Any, seen: frozenset[Any]) -> None:
        if not isinstance(field_refs, generic.ArrayObject):
            return
        for ref in field_refs:
            if not isinstance(ref, generic.IndirectObject):
                continue
            if ref.reference in seen:
                raise PdfReadError("circular reference in the form fields")
            field = ref.get_object()  # type: ignore[no-untyped-call]
            if not isinstance(field, generic.DictionaryObject) or "/T" not in field:
                continue
            own_type = field.get("/FT", field_type)
            if own_type == "/Sig" and "/V" in field:
                value = field.raw_get("/V")
                if not isinstance(value, generic.NullObject):
                    values.append(value)
            if "/Kids" in field:
                walk(field["/Kids"], own_type, seen | {ref.reference})

    walk(fields, None, frozenset())
    return values


def _signature_dictionary(pdf: bytes, reference: Any, offset: int, reader: Any) -> _PdfSignature:
    """The signature dictionary at ``offset``, read key by key with pyhanko's object reader, except /Contents: its
    position is noted and its hex string skipped (the CMS is taken from those bytes with bytes.fromhex)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.misc import PdfReadError, read_non_whitespace
    from pyhanko.pdf_utils.xref import read_object_header

    # (pyhanko's readers carry no type hints: the ignores below are for that.)
    stream = io.BytesIO(pdf)
    stream.seek(offset)
    header = read_object_header(stream, strict=False)  # type: ignore[no-untyped-call]
    if header != (reference.idnum, reference.generation):
        raise PdfReadError("signature dictionary not at its cross-reference offset")
    if stream.read(2) != b"<<":
        raise PdfReadError("signature is not a dictionary")
    container = generic.Reference(reference.idnum, reference.generation, reader)
    entries: dict[str, Any] = {}
    contents: tuple[int, int] | None = None
    while True:
        if read_non_whitespace(stream) == b">":  # type: ignore[no-untyped-call]
            if stream.read(1) != b">":
                raise PdfReadError("signature dictionary not closed")
            break
        stream.seek(-1, io.SEEK_CUR)
        key = generic.NameObject.read_from_stream(stream)  # type: ignore[no-untyped-call]
        if key in entries or (key == "/Contents" and contents is not None):
            raise PdfReadError(f"{key} twice in the signature dictionary")
        read_non_whitespace(stream, seek_back=True)  # type: ignore[no-untyped-call]
        if key == "/Contents":
            start = stream.tell()
            if pdf[start : start + 1] != b"<" or pdf[start + 1 : start + 2] == b"<":
                raise PdfReadError("/Contents is not a hex string")
            end = pdf.index(b">", start) + 1
            contents = (start, end)
            stream.seek(end)
        else:
            entries[key] = generic.read_object(stream, container)
    if contents is None or entries.get("/SubFilter") not in _PDF_SUBFILTERS:
        raise PdfReadError("not a PAdES signature dictionary")
    byte_range = entries["/ByteRange"]
    if not isinstance(byte_range, generic.ArrayObject) or not all(
        isinstance(n, generic.NumberObject) for n in byte_range
    ):
        raise PdfReadError("/ByteRange is not an array of numbers")
    return _PdfSignature(byte_range=[int(n) for n in byte_range], contents_start=contents[0], contents_end=contents[1])


def _cms_from_contents(hex_string: bytes) -> bytes:
    """The DER of the CMS in /Contents: hex (whitespace allowed), zero-padded to the space the signer reserved.
    Anything but zeros after the CMS would be bytes in the file that no signature covers: refused."""
    raw = bytes.fromhex(hex_string.translate(None, _PDF_WHITESPACE).decode("ascii"))
    if len(raw) < 2 or raw[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if raw[1] < 0x80:
        length = 2 + raw[1]
    else:
        size = raw[1] & 0x7F
        if not 1 <= size <= 4:  # 0 is BER's indefinite length: CMS in a PDF is DER
            raise ValueError("unsupported DER length")
        length = 2 + size + int.from_bytes(raw[2 : 2 + size], "big")
    if length > len(raw) or raw[length:].strip(b"\x00"):
        raise ValueError("bytes after the CMS")
    return raw[:length]
