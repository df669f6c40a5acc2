"""The client against the simulated Konnektor over its real sockets. Every request the client sends is captured
and validated against the official gematik schemas when the test ends (``make_client``)."""

from __future__ import annotations

import hashlib
import threading

import pytest
from asn1crypto import cms
from cryptography import x509

from konnektor import CallContext, KonnektorError, SignItem, batches, error_text, telematik_id_of
from tests.fixtures.konnektor_sim import (
    CLIENT_SYSTEM,
    CT_ID,
    HBA_HOLDER,
    HBA_TELEMATIK_ID,
    MANDANT,
    WORKPLACE,
    sample_pdf,
)

CTX = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE, "user-aerztin")


def letters(count: int, *, pades_every: int = 0) -> list[SignItem]:
    items = []
    for n in range(count):
        if pades_every and n % pades_every == 0:
            items.append(SignItem(f"r{n}", sample_pdf(f"Brief {n}"), "application/pdf", f"Entlassbrief {n}", True))
        else:
            items.append(SignItem(f"r{n}", f"Arztbrief Nr. {n}\n".encode(), "text/plain", f"Arztbrief {n}"))
    return items


def signer_certificate(signature: bytes) -> bytes:
    signed = cms.ContentInfo.load(signature)["content"]
    signer = signed["signer_infos"][0]
    serial = signer["sid"].chosen["serial_number"].native
    for candidate in signed["certificates"]:
        if candidate.chosen.serial_number == serial:
            return bytes(candidate.chosen.dump())
    raise AssertionError("signer certificate not in the CMS")


def message_digest(signature: bytes) -> bytes:
    signer = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    for attribute in signer["signed_attrs"]:
        if attribute["type"].native == "message_digest":
            return bytes(attribute["values"][0].native)
    raise AssertionError("no message digest")


def test_the_whole_flow(konnektor_sim, make_client) -> None:
    client, capture = make_client(konnektor_sim.base_url)
    directory = client.discover()
    # The simulator announces SignatureService 7.5 and 7.4: the client takes 7.5 and its own endpoint.
    assert directory.services["SignatureService"][0].startswith("7.5.")
    assert "/v75/" in directory.services["SignatureService"][1]
    assert any(v.startswith("7.4") for v in directory.offered["SignatureService"])
    assert directory.product_name

    cards = client.get_cards(CTX)
    assert len(cards) == 1
    card = cards[0]
    sim_card = konnektor_sim.cards[0]
    assert (card.card_handle, card.card_type, card.ct_id, card.holder_name) == (
        sim_card.card_handle,
        "HBA",
        CT_ID,
        HBA_HOLDER,
    )
    assert card.iccsn == sim_card.iccsn and card.slot_id >= 1

    certificate = client.read_qes_certificate(CTX, card.card_handle)
    assert certificate == sim_card.certificate_der
    # The simulated eHBA has one (RSA) QES certificate: asking for ECC too (G2.1 cards) finds nothing more.
    assert client.read_qes_certificates(CTX, card.card_handle) == [certificate]
    assert telematik_id_of(certificate) == HBA_TELEMATIK_ID

    pin = client.get_pin_status(CTX, card.card_handle)
    assert (pin.status, pin.left_tries) == ("VERIFIABLE", 3)

    job = client.get_job_number(CTX)
    items = letters(3, pades_every=3)  # r0 PAdES, r1 and r2 CAdES
    results = client.sign_documents(CTX, card.card_handle, job, items)
    assert [r.request_id for r in results] == ["r0", "r1", "r2"]
    assert all(r.ok and r.code is None for r in results)
    pdf = results[0].signed_document
    assert pdf is not None and pdf.startswith(b"%PDF") and len(pdf) > len(items[0].content)
    assert results[0].signature is None
    for item, result in zip(items[1:], results[1:], strict=True):
        assert result.signature is not None and result.signed_document is None
        assert signer_certificate(result.signature) == certificate
        assert message_digest(result.signature) == hashlib.sha256(item.content).digest()
    assert [(s.job_number, s.request_id) for s in konnektor_sim.signed_requests] == [
        (job, "r0"),
        (job, "r1"),
        (job, "r2"),
    ]

    sent = {s.operation: s.soap_action for s in capture.sent}
    assert sent["SignDocument"] == "http://ws.gematik.de/conn/SignatureService/v7.5#SignDocument"
    assert sent["GetCards"] == "http://ws.gematik.de/conn/EventService/v7.2#GetCards"


def test_many_documents_in_calls_within_the_limits(konnektor_sim, make_client) -> None:
    client, capture = make_client(konnektor_sim.base_url, max_requests_per_call=50)
    card = client.get_cards(CTX)[0]
    plan = batches(letters(120), client.config)
    assert [len(call) for call in plan.calls] == [50, 50, 20]
    signed = []
    for call in plan.calls:
        job = client.get_job_number(CTX)
        signed += client.sign_documents(CTX, card.card_handle, job, call)
    assert len(signed) == 120 and all(r.ok for r in signed)
    assert capture.operations().count("SignDocument") == 3


def test_stop_signature_while_the_terminal_waits_for_the_pin(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    client, capture = make_client(sim.base_url)
    card = client.get_cards(CTX)[0]
    job = client.get_job_number(CTX)
    outcome: dict[str, object] = {}

    def sign() -> None:
        try:
            outcome["results"] = client.sign_documents(CTX, card.card_handle, job, letters(2))
        except KonnektorError as exc:
            outcome["error"] = exc

    signer = threading.Thread(target=sign)
    signer.start()
    terminal = sim.terminal(CT_ID)
    assert terminal.wait_for_prompt(30)
    assert terminal.display[0] == f"#{job}"  # what the page shows next to "Bitte PIN am Kartenterminal eingeben"
    client.stop_signature(CTX, job)  # the same client, from another thread
    signer.join(30)
    assert not signer.is_alive()
    results = outcome.get("results")
    assert isinstance(results, list), outcome
    assert [r.ok for r in results] == [False, False]
    assert sim.signed_requests == []
    assert capture.operations().count("StopSignature") == 1


def test_stop_signature_for_an_unknown_job(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.stop_signature(CTX, "ZZZ-999")
    assert caught.value.code == 4243
    assert caught.value.text == "Die Jobnummer ist dem Konnektor unbekannt."


def test_sign_timeout_while_nobody_types_the_pin(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    client, _ = make_client(sim.base_url, sign_timeout=1.0)
    card = client.get_cards(CTX)[0]
    job = client.get_job_number(CTX)
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(CTX, card.card_handle, job, letters(1))
    assert caught.value.kind == "timeout"
    assert caught.value.code is None
    assert "PIN-Eingabe" in caught.value.text
    client.stop_signature(CTX, job)  # the Konnektor still waits: cancelling ends it
    assert sim.signed_requests == []


def test_pin_typed_at_the_terminal(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    client, _ = make_client(sim.base_url)
    card = client.get_cards(CTX)[0]
    job = client.get_job_number(CTX)
    terminal = sim.terminal(CT_ID)

    def person() -> None:
        if terminal.wait_for_prompt(30):
            terminal.enter_pin("123456")

    helper = threading.Thread(target=person)
    helper.start()
    results = client.sign_documents(CTX, card.card_handle, job, letters(2))
    helper.join(30)
    assert [r.ok for r in results] == [True, True]


# ---- faults: each one the simulator can produce, with its German text ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "code", "words"),
    [
        ("pin-timeout", {}, 4043, "Zeitüberschreitung bei der PIN-Eingabe"),
        ("user-cancel", {}, 4049, "Abbruch durch den Benutzer"),
        ("card-busy", {}, 4060, "belegt"),
        ("card-busy", {"code": 4093}, 4093, "exklusiv"),
        ("hba-other-user", {}, 4018, "anderen Nutzer"),
        ("job-number-reused", {}, 4252, "bereits verwendet"),
        ("transport-pin", {}, 4065, "transportgeschützt"),
        ("card-removed", {}, 4008, "nicht (mehr) gesteckt"),
        ("wrong-pin", {}, 4085, "Zugriffsbedingungen"),
    ],
)
def test_faults_carry_their_german_text(konnektor_sim, make_client, kind, params, code, words) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    job = client.get_job_number(CTX)
    konnektor_sim.arm_fault(kind, **params)
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(CTX, card.card_handle, job, letters(3))
    error = caught.value
    assert (error.code, error.kind) == (code, "fault")
    assert words in error.text
    assert error.fault  # the Konnektor's own words, for the log


def test_transport_pin_is_seen_before_signing(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    konnektor_sim.arm_fault("transport-pin")
    assert client.get_pin_status(CTX, card.card_handle).status == "TRANSPORT_PIN"


def test_a_blocked_pin(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    for left in (2, 1, 0):
        konnektor_sim.arm_fault("wrong-pin")
        with pytest.raises(KonnektorError):
            client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(1))
        status = client.get_pin_status(CTX, card.card_handle)
        assert status.left_tries == left or status.status == "BLOCKED"
    assert client.get_pin_status(CTX, card.card_handle).status == "BLOCKED"
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(1))
    assert caught.value.code == 4063
    assert "gesperrt" in caught.value.text


def test_a_card_removed_invalidates_its_handle(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    konnektor_sim.remove_card(konnektor_sim.cards[0], reinsert=False)
    with pytest.raises(KonnektorError) as caught:
        client.get_pin_status(CTX, card.card_handle)
    assert caught.value.code == 4101
    assert "Kartenhandle ungültig" in caught.value.text
    assert client.get_cards(CTX) == []


def test_one_failed_document_leaves_the_others_signed(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    konnektor_sim.arm_fault("fail-request", request_id="r1")
    results = client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(3))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code == 4123
    assert results[1].text == "Fehler bei der Signaturerstellung."
    assert results[1].signature is None


def test_sub_batches_ask_for_the_pin_again(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(signatures_per_pin=2)
    client, _ = make_client(sim.base_url)
    card = client.get_cards(CTX)[0]
    results = client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(5))
    assert all(r.ok for r in results)


def test_a_pin_timeout_in_a_later_sub_batch_returns_the_earlier_signatures(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(auto_pin=None, signatures_per_pin=2)
    client, _ = make_client(sim.base_url)
    card = client.get_cards(CTX)[0]
    job = client.get_job_number(CTX)
    terminal = sim.terminal(CT_ID)

    def person() -> None:
        # Types the PIN for the first sub-batch, then walks away: the second prompt is cancelled at the pad.
        if terminal.wait_for_prompt(30):
            terminal.enter_pin("123456")
            terminal.wait_settled(30)
        if terminal.wait_for_prompt(30):
            terminal.cancel()

    helper = threading.Thread(target=person)
    helper.start()
    results = client.sign_documents(CTX, card.card_handle, job, letters(4))
    helper.join(30)
    assert [r.ok for r in results] == [True, True, False, False]
    assert results[2].code == 4049


@pytest.mark.parametrize(
    ("ctx", "code"),
    [
        (CallContext("Fremd", CLIENT_SYSTEM, WORKPLACE, "u"), 4004),
        (CallContext(MANDANT, "Fremd", WORKPLACE, "u"), 4005),
        (CallContext(MANDANT, CLIENT_SYSTEM, "Arbeitsplatz-99", "u"), 4006),
    ],
)
def test_a_wrong_context_is_explained(konnektor_sim, make_client, ctx, code) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_cards(ctx)
    assert caught.value.code == code
    assert "prüfen" in caught.value.text


def test_signing_without_user_id(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    no_user = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE)
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(no_user, card.card_handle, client.get_job_number(no_user), letters(1))
    assert caught.value.code == 4003


def test_more_requests_than_the_konnektor_takes(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(max_requests_per_call=5)
    client, _ = make_client(sim.base_url)
    card = client.get_cards(CTX)[0]
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(6))
    assert caught.value.code == 4000
    assert "zu viele Dokumente" in caught.value.text


# ---- connection modes ----------------------------------------------------------------------------------------


def test_basic_auth(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(mode="basic", basic_user="portal", basic_password="richtig-geheim")
    assert sim.base_url.startswith("https://")
    client, _ = make_client(
        sim.base_url, mode="basic", username="portal", password="richtig-geheim", ca_pem=sim.server_ca_pem
    )
    assert client.get_cards(CTX)[0].holder_name == HBA_HOLDER
    assert client.discover().services["SignatureService"][1].startswith("https://")

    wrong, _ = make_client(sim.base_url, mode="basic", username="portal", password="falsch", ca_pem=sim.server_ca_pem)
    with pytest.raises(KonnektorError) as caught:
        wrong.get_cards(CTX)
    assert caught.value.kind == "auth"
    assert caught.value.code is None
    assert "Benutzername oder Passwort" in caught.value.text


def test_client_certificate(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(mode="cert")
    cert_pem, key_pem = sim.issue_client_certificate("KIMPortal")
    client, _ = make_client(
        sim.base_url, mode="cert", client_cert_pem=cert_pem, client_key_pem=key_pem, ca_pem=sim.server_ca_pem
    )
    card = client.get_cards(CTX)[0]
    results = client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), letters(1))
    assert results[0].ok


def test_without_client_certificate_the_konnektor_refuses(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(mode="cert")
    # Plain configuration (no certificate) against the HTTPS Konnektor.
    client, _ = make_client(sim.base_url, mode="plain", ca_pem=sim.server_ca_pem, timeout=10)
    with pytest.raises(KonnektorError) as caught:
        client.get_cards(CTX)
    # Refused in the handshake, or (as the simulator does: optional client authentication) with HTTP 403.
    assert caught.value.code is None
    assert caught.value.kind in ("tls", "unreachable", "auth")
    assert "Client-Zertifikat" in caught.value.text


def test_a_certificate_from_another_ca_is_refused(konnektor_sim_factory, make_client, tmp_path_factory) -> None:
    sim = konnektor_sim_factory(mode="cert")
    other = konnektor_sim_factory(mode="cert", hba=False)
    cert_pem, key_pem = other.issue_client_certificate("KIMPortal")
    client, _ = make_client(
        sim.base_url, mode="cert", client_cert_pem=cert_pem, client_key_pem=key_pem, ca_pem=sim.server_ca_pem
    )
    with pytest.raises(KonnektorError) as caught:
        client.get_cards(CTX)
    assert caught.value.kind in ("tls", "unreachable", "auth")
    assert "Client-Zertifikat" in caught.value.text


def test_an_untrusted_konnektor_certificate_is_refused(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(mode="basic", basic_password="pw")
    other = konnektor_sim_factory(mode="basic", hba=False)
    client, _ = make_client(sim.base_url, mode="basic", username="portal", password="pw", ca_pem=other.server_ca_pem)
    with pytest.raises(KonnektorError) as caught:
        client.get_cards(CTX)
    assert caught.value.kind == "tls"
    assert "nicht vertrauenswürdig" in caught.value.text
    # Without a configured CA the system store decides (and does not know the simulator's CA).
    system, _ = make_client(sim.base_url, mode="basic", username="portal", password="pw")
    with pytest.raises(KonnektorError) as caught:
        system.get_cards(CTX)
    assert caught.value.kind == "tls"


def test_the_qes_certificate_is_a_real_certificate(konnektor_sim, make_client) -> None:
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    certificate = x509.load_der_x509_certificate(client.read_qes_certificate(CTX, card.card_handle))
    assert HBA_HOLDER in certificate.subject.rfc4514_string()


def test_more_refusals_with_their_german_text(konnektor_sim_factory, make_client) -> None:
    """The remaining codes the simulator answers with, each reached through the client's own calls."""
    sim = konnektor_sim_factory(max_document_bytes=1000)
    smcb = sim.add_smcb("Klinikum Demo", "5-2-KH-01")
    sim.add_terminal("CT-2", ["Arbeitsplatz-2"])
    client, _ = make_client(sim.base_url)
    hba = next(card for card in client.get_cards(CTX))
    elsewhere = CallContext(MANDANT, CLIENT_SYSTEM, "Arbeitsplatz-2", "user-aerztin")
    ecc, _ = make_client(sim.base_url, crypt="ECC")

    def code_of(call) -> tuple[int | None, str]:
        with pytest.raises(KonnektorError) as caught:
            call()
        return caught.value.code, caught.value.text

    def sign(items, *, ctx=CTX, handle=None, signer=client):
        return lambda: signer.sign_documents(ctx, handle or hba.card_handle, signer.get_job_number(ctx), items)

    cases = {
        4021: lambda: client.get_cards(CallContext("", CLIENT_SYSTEM, WORKPLACE)),
        4072: lambda: client.get_pin_status(CTX, hba.card_handle, pin_ref="PIN.XYZ"),
        4092: sign(letters(1), ctx=elsewhere),
        4110: sign([SignItem("x", b"\x00\x01binary", "application/octet-stream", "Binaer")]),
        4126: sign(letters(1), handle=smcb.card_handle),
        4149: lambda: client.read_qes_certificate(CTX, smcb.card_handle),
        4258: sign(letters(1), signer=ecc),
        4283: sign([SignItem("big", b"x" * 2000, "text/plain", "Gross")]),
    }
    for expected, call in cases.items():
        code, text = code_of(call)
        assert code == expected, (expected, code, text)
        assert text == error_text(expected)


def test_a_large_signed_pdf_comes_back_whole(konnektor_sim, make_client) -> None:
    # Base64 of a signed PDF over 10 MB is one text node beyond libxml2's default limit: the signature
    # service parses its answers with huge_tree (entities and DTDs stay refused).
    big = sample_pdf("Befund " * 1_700_000)
    assert len(big) > 11 * 2**20
    client, _ = make_client(konnektor_sim.base_url)
    card = client.get_cards(CTX)[0]
    item = SignItem("big", big, "application/pdf", "Grosser Befund", pades=True)
    result = client.sign_documents(CTX, card.card_handle, client.get_job_number(CTX), [item])[0]
    assert result.ok
    assert result.signed_document is not None and result.signed_document.startswith(big[:200])
    assert len(result.signed_document) > len(big)
