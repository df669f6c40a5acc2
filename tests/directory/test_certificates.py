from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from directory.certificates import admission_registration_numbers, entry_cert_state, parse_certificate
from tisim.vzd.certs import EXPIRED_UNTIL, FOREIGN_TELEMATIK_ID, VALID_UNTIL, admission_extension, make_pool

TID = "1-200000000000004711"
NOW = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
SPEC_CERTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "vzd" / "certs"


@pytest.fixture(scope="module")
def pool():
    return make_pool(5, size=3)


def _of(pool, kind):
    return next(p for p in pool if p.kind == kind)


def test_valid_certificate_subject_validity_and_telematik_id(pool):
    info = parse_certificate(_of(pool, "valid").for_telematik_id(TID), telematik_id=TID, now=NOW)
    assert info.ok, info
    assert "CN=ENC-Testzertifikat" in info.subject
    assert info.telematik_ids == (TID,)
    assert info.not_after == VALID_UNTIL
    assert info.key_type in ("RSA-2048", "ECC secp256r1")


def test_expired_certificate(pool):
    info = parse_certificate(_of(pool, "expired").for_telematik_id(TID), telematik_id=TID, now=NOW)
    assert not info.ok
    assert info.problem == "expired"
    assert info.not_after == EXPIRED_UNTIL


def test_telematik_id_mismatch(pool):
    info = parse_certificate(_of(pool, "mismatch").der, telematik_id=TID, now=NOW)
    assert info.problem == "telematik_id_mismatch"
    assert info.telematik_ids == (FOREIGN_TELEMATIK_ID,)


def test_before_validity(pool):
    info = parse_certificate(
        _of(pool, "valid").for_telematik_id(TID), telematik_id=TID, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    assert info.problem == "not_yet_valid"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not a certificate", b"\x30\x82\xff\xff", bytes(range(256)) * 4, b"\x30\x03\x02\x01\x07"],
)
def test_garbage_bytes_are_unreadable_never_an_exception(garbage):
    info = parse_certificate(garbage, telematik_id=TID, now=NOW)
    assert not info.ok
    assert info.problem == "unreadable"
    assert info.problem_label == "Zertifikat nicht lesbar"


def test_broken_but_well_formed_der_is_unreadable(pool):
    info = parse_certificate(_of(pool, "broken").for_telematik_id(TID), telematik_id=TID, now=NOW)
    assert info.problem == "unreadable"


def test_entry_state_valid_invalid_missing(pool):
    valid = _of(pool, "valid").for_telematik_id(TID)
    assert entry_cert_state([valid], telematik_id=TID, now=NOW).status == "valid"
    assert entry_cert_state([], telematik_id=TID, now=NOW).status == "missing"
    broken = _of(pool, "broken").der
    state = entry_cert_state([broken], telematik_id=TID, now=NOW)
    assert state.status == "invalid"
    assert state.label == "Zertifikat nicht verwendbar"
    # one usable + one unreadable: still usable; a foreign Telematik-ID among them: refuse (KOM-LE-A_2178)
    assert entry_cert_state([valid, broken], telematik_id=TID, now=NOW).status == "valid"
    assert entry_cert_state([valid, _of(pool, "mismatch").der], telematik_id=TID, now=NOW).status == "invalid"


def test_admission_parser_skips_the_authority_country():
    # admissionAuthority [4] directoryName with C=DE (a PrintableString) must not count as registrationNumber
    authority = bytes.fromhex("a40f300d310b3009060355040613024445")
    ext = admission_extension("Betriebsstätte Arzt", "1.2.276.0.76.4.50", b"1-2012345")
    body = ext[2:]
    with_authority = bytes([0x30, len(authority) + len(body)]) + authority + body
    assert admission_registration_numbers(with_authority) == ("1-2012345",)
    with pytest.raises(ValueError):
        admission_registration_numbers(b"\x30\x05\x30")


def test_real_ti_test_certificates_from_the_spec_folder_when_present():
    files = sorted(SPEC_CERTS.glob("*.der")) + sorted(SPEC_CERTS.glob("*.crt")) if SPEC_CERTS.is_dir() else []
    expected = {
        "11-SMC-B-Testkarte-883110000138398": "11-SMC-B-Testkarte-883110000138398",
        "10-HBA-Testkarte-883110000138418": "10-HBA-Testkarte-883110000138418",
    }
    checked = 0
    for path in files:
        tid = next((v for k, v in expected.items() if path.name.startswith(k)), None)
        if tid is None:
            continue
        info = parse_certificate(path.read_bytes(), telematik_id=tid, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        assert info.telematik_ids == (tid,), path.name
        assert info.ok, (path.name, info.problem)
        checked += 1
    assert checked == (4 if files else 0)
