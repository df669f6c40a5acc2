"""The Komfortsignatur through KonnektorClient against the simulated Konnektor over its real sockets (modes "basic"
and "cert"; refused in "plain"). Every request the client sends is validated against the official schemas when the
test ends (``make_client``)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import zeep

from konnektor import CallContext, KonnektorClient, KonnektorError, SignatureMode, SignItem, error_text, messages
from konnektor.client import WSDL_FILES, binding_name, wsdl_document
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, CT_ID, MANDANT, WORKPLACE, client_options
from tests.konnektor.support import OfficialSchemas, standard_sds
from tisim.konnektor import KonnektorSimulator

PIN_CTX = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE, "user-aerztin")


def comfort_ctx() -> CallContext:
    return CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE, str(uuid.uuid4()))


def letters(count: int) -> list[SignItem]:
    return [SignItem(f"r{n}", f"Brief {n}".encode(), "text/plain", f"Brief {n}") for n in range(count)]


def secure(factory: Callable[..., KonnektorSimulator], make_client: Any, mode: str = "basic", **kwargs: Any):  # type: ignore[no-untyped-def]
    sim = factory(mode=mode, **kwargs)
    client, capture = make_client(sim.base_url, **client_options(sim))
    return sim, client, capture


def sign(client: KonnektorClient, ctx: CallContext, handle: str, count: int = 1) -> list[bool]:
    return [r.ok for r in client.sign_documents(ctx, handle, client.get_job_number(ctx), letters(count))]


@pytest.mark.parametrize("mode", ["basic", "cert"])
def test_activate_sign_without_pin_and_deactivate(konnektor_sim_factory, make_client, mode: str) -> None:  # type: ignore[no-untyped-def]
    sim, client, capture = secure(konnektor_sim_factory, make_client, mode, comfort_max=10, comfort_timer=3600)
    handle = sim.cards[0].card_handle
    ctx = comfort_ctx()
    before = client.get_signature_mode(ctx, handle)
    assert before == SignatureMode(
        comfort_active=False, comfort_enabled=True, comfort_max=10, comfort_timer=dt.timedelta(hours=1)
    )

    terminal = sim.terminal(CT_ID)
    prompts = len(terminal.prompts)
    client.activate_comfort_signature(ctx, handle)
    assert terminal.prompts[prompts:] == [["Komfortsignatur aktivieren HBA", "PIN.QES:"]]
    assert client.get_pin_status(ctx, handle).status == "VERIFIED"

    mode_now = client.get_signature_mode(ctx, handle)
    assert mode_now.comfort_active and mode_now.remaining_count == 10
    assert mode_now.valid_until is not None
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(minutes=59) < mode_now.valid_until <= now + dt.timedelta(hours=1, seconds=1)

    assert sign(client, ctx, handle, 4) == [True] * 4
    assert len(terminal.prompts) == prompts + 1  # only the activation asked for the PIN
    assert client.get_signature_mode(ctx, handle).remaining_count == 6

    client.deactivate_comfort_signature(ctx, [handle])
    assert not client.get_signature_mode(ctx, handle).comfort_active
    with pytest.raises(KonnektorError) as ended:
        sign(client, ctx, handle)
    assert ended.value.code == 4278
    # Deactivating what is no longer active is no error (the Konnektor warns, nothing is open either way).
    client.deactivate_comfort_signature(ctx, [handle])
    client.deactivate_comfort_signature(ctx, [])
    assert "DeactivateComfortSignature" in capture.operations()


def test_used_up_and_expired_are_errors_with_german_text(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    sim, client, _ = secure(konnektor_sim_factory, make_client, comfort_max=2)
    handle = sim.cards[0].card_handle
    ctx = comfort_ctx()
    client.activate_comfort_signature(ctx, handle)
    with pytest.raises(KonnektorError) as too_many:
        sign(client, ctx, handle, 3)
    assert too_many.value.code == 4271
    assert sign(client, ctx, handle, 2) == [True, True]
    mode = client.get_signature_mode(ctx, handle)
    assert not mode.comfort_active and mode.remaining_count is None
    with pytest.raises(KonnektorError) as used_up:
        sign(client, ctx, handle)
    assert used_up.value.code == 4271
    assert used_up.value.text == error_text(4271)
    assert "erneut aktivieren" in used_up.value.text

    sim.comfort_timer = 0.3  # the next activation lasts 0.3 s
    short = comfort_ctx()
    client.activate_comfort_signature(short, handle)
    deadline = time.monotonic() + 30
    while client.get_signature_mode(short, handle).comfort_active:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(KonnektorError) as expired:
        sign(client, short, handle)
    assert expired.value.code == 4271


def test_refused_in_plain_mode_without_a_request(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, capture = make_client(konnektor_sim.base_url)
    handle = konnektor_sim.cards[0].card_handle
    with pytest.raises(KonnektorError) as refused:
        client.activate_comfort_signature(comfort_ctx(), handle)
    assert refused.value.kind == "config"
    assert "Login" in refused.value.text and "Zertifikat" in refused.value.text
    assert "ActivateComfortSignature" not in capture.operations()
    # Reading the mode is harmless: the Konnektor reports the function as off.
    mode = client.get_signature_mode(comfort_ctx(), handle)
    assert not mode.comfort_active and not mode.comfort_enabled


def test_the_simulator_refuses_too_when_switched_off(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    sim, client, _ = secure(konnektor_sim_factory, make_client, comfort_signature=False)
    with pytest.raises(KonnektorError) as refused:
        client.activate_comfort_signature(comfort_ctx(), sim.cards[0].card_handle)
    assert refused.value.code == 4263
    assert "nicht" in refused.value.text


def test_activation_errors(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    sim, client, _ = secure(konnektor_sim_factory, make_client, auto_pin="999999")
    handle = sim.cards[0].card_handle
    with pytest.raises(ValueError):
        client.activate_comfort_signature(CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE), handle)
    with pytest.raises(KonnektorError) as not_uuid:
        client.activate_comfort_signature(PIN_CTX, handle)
    assert not_uuid.value.code == 4272
    with pytest.raises(KonnektorError) as wrong:
        client.activate_comfort_signature(comfort_ctx(), handle)
    assert (wrong.value.code, wrong.value.text) == (4276, error_text(4276))
    assert client.get_pin_status(PIN_CTX, handle).left_tries == 2


def test_another_user_while_active(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    sim, client, _ = secure(konnektor_sim_factory, make_client)
    handle = sim.cards[0].card_handle
    ctx = comfort_ctx()
    client.activate_comfort_signature(ctx, handle)
    with pytest.raises(KonnektorError) as other:
        sign(client, PIN_CTX, handle)
    assert other.value.code == 4018
    assert not client.get_signature_mode(PIN_CTX, handle).comfort_active
    assert client.get_signature_mode(ctx, handle).comfort_active


def test_requests_are_valid_against_the_official_schema(official_schemas: OfficialSchemas) -> None:
    client = zeep.Client(wsdl_document(WSDL_FILES[("SignatureService", (7, 5))]))
    proxy = client.create_service(binding_name("SignatureService", (7, 5)), "http://127.0.0.1:9/x")
    ctx = comfort_ctx()
    for operation, args in (
        ("ActivateComfortSignature", messages.card_and_context(ctx, "HBA-1")),
        ("GetSignatureMode", messages.card_and_context(ctx, "HBA-1")),
        ("DeactivateComfortSignature", messages.deactivate_comfort_signature(["HBA-1", "HBA-2"])),
    ):
        assert official_schemas.validate_envelope(client.create_message(proxy, operation, **args)) == operation


def test_a_74_konnektor_has_no_comfort_signature(crafted, make_client) -> None:  # type: ignore[no-untyped-def]
    crafted.sds = standard_sds(
        crafted.base_url, signature=(("7.4.2", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),)
    )
    client, capture = make_client(crafted.base_url.replace("http://", "https://"), mode="basic", username="u",
                                  password="p")  # fmt: skip
    # (No request reaches the crafted Konnektor: the sds is read over HTTPS and fails first.)
    with pytest.raises(KonnektorError):
        client.get_signature_mode(comfort_ctx(), "HBA-1")
    plain, plain_capture = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as refused:
        plain.get_signature_mode(comfort_ctx(), "HBA-1")
    assert refused.value.kind == "config" and "7.5" in refused.value.text
    assert plain_capture.sent == [] and capture.sent == []


def test_the_refusals_are_translated_where_the_portal_speaks_english(crafted, make_client) -> None:  # type: ignore[no-untyped-def]
    from django.utils import translation

    crafted.sds = standard_sds(
        crafted.base_url, signature=(("7.4.2", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),)
    )
    client, capture = make_client(crafted.base_url)
    with translation.override("en"):
        with pytest.raises(KonnektorError) as plain:
            client.activate_comfort_signature(comfort_ctx(), "HBA-1")
        with pytest.raises(KonnektorError) as old:
            client.get_signature_mode(comfort_ctx(), "HBA-1")
    assert plain.value.text == (
        "The comfort signature is only possible with a secured connection to the Konnektor (connection type “Login” "
        "or “Zertifikat”). Please change the connection type in the Konnektor settings."
    )
    assert old.value.text == (
        "The Konnektor does not offer GetSignatureMode: it requires SignatureService 7.5 (offered: 7.4.2)."
    )
    with translation.override("de"):
        with pytest.raises(KonnektorError) as german:
            client.get_signature_mode(comfort_ctx(), "HBA-1")
    assert german.value.text.startswith("Der Konnektor bietet GetSignatureMode nicht an")
    assert capture.sent == []
