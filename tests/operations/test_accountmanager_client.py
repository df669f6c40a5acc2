"""The Account Manager client (operations.clients.accountmanager) against the simulated Account Manager's real HTTPS
socket; every request and answer is validated against gematik's OpenAPI files (tests.fixtures.accountmanager_sim)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from konnektor import KonnektorClient
from mailbox.models import KimAccount
from operations.clients.accountmanager import (
    BAD_POLICY_TEXT,
    BAD_RESPONSE_TEXT,
    KIM_VERSION_LARGE_WARNING,
    MAX_RESPONSE_BYTES,
    POLICY_COMPILE_TIMEOUT,
    POLICY_MAX_CHARS,
    STATUS_TEXTS,
    TIMEOUT_TEXT,
    TLS_TEXT,
    TOO_LARGE_TEXT,
    UNREACHABLE_TEXT,
    AccountManagerClient,
    AccountManagerConfig,
    AccountManagerError,
    OutOfOffice,
    PasswordPolicyError,
    ServiceInformation,
)
from operations.services.amauth import (
    NO_SMCB_TEXT,
    RENEW_BEFORE,
    SmcbTokenProvider,
    account_call_context,
    account_manager_client,
    build_jwt,
    clear_token_cache,
)
from signing.services.konnektor import konnektor_client
from tests.fixtures.accountmanager_sim import (
    AM_ADDRESS,
    AM_OTHER,
    AM_PASSWORD,
    SMCB_TELEMATIK_ID,
    AmSim,
    OpenApiCheck,
)
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.mailbox.factories import KimAccountFactory
from tests.tisim.support import pop3_connect, pop3_user
from tisim.accountmanager.server import OVERSIZE_BYTES
from tisim.cm.autoreply import AbsenceStore
from tisim.konnektor import KonnektorSimulator

NEW_PASSWORD = "Neues-Passwort-2027?"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _posts(sim: AmSim) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.am.seen if r.method != "GET"]


def _pop3_accepts(sim: AmSim, address: str, password: str) -> bool:
    conn = pop3_connect(sim.cm)
    try:
        conn.user(pop3_user(address))
        conn.pass_(password)
    except Exception:
        return False
    finally:
        conn.close()
    return True


# --- service information and limits ------------------------------------------------------------------------------


def test_service_information_gives_the_policy_and_its_text(accountmanager_sim: AmSim) -> None:
    info = accountmanager_sim.client().service_information()
    assert info.kim_service_versions == ("1.5.5",)
    assert info.jwt_expiration == 300
    assert info.reference_id_required is True and info.initial_password_required is True
    assert "12" in info.password_policy_display
    assert info.password_matches(AM_PASSWORD)
    assert not info.password_matches("kurz")


def test_limits_are_read_with_basic_auth_and_shrink_as_mail_arrives(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    before = client.limits()
    assert before.quota == accountmanager_sim.am.quota
    assert before.remaining_quota == before.quota
    assert before.max_mail_size == 734003200
    assert before.data_time_to_live == 90
    accountmanager_sim.cm.deliver(AM_ADDRESS, b"Subject: x\r\n\r\n" + b"y" * 5000)
    after = client.limits()
    assert after.remaining_quota is not None and before.quota is not None
    assert before.quota - after.remaining_quota >= 5000
    assert 0 < (after.used_fraction or 0) < 1
    seen = accountmanager_sim.am.seen[-1]
    assert seen.headers["Authorization"].startswith("Basic ")
    assert base64.b64decode(seen.headers["Authorization"][6:]).decode() == f"{AM_ADDRESS}:{AM_PASSWORD}"


def test_unlimited_quota_is_none(accountmanager_sim_factory: Callable[..., AmSim]) -> None:
    limits = accountmanager_sim_factory(quota=-1).client().limits()
    assert limits.quota is None and limits.remaining_quota is None and limits.used_fraction is None


def test_limits_with_a_wrong_password_or_unknown_address(accountmanager_sim: AmSim) -> None:
    with pytest.raises(AccountManagerError) as wrong:
        accountmanager_sim.client(password="falsch").limits()
    assert (wrong.value.status, wrong.value.code) == (401, "http_401")
    assert "KIM-Adresse und Passwort" in wrong.value.text
    with pytest.raises(AccountManagerError) as unknown:
        accountmanager_sim.client(username="niemand@klinikum-demo.kim.telematik").limits()
    assert unknown.value.status == 404
    assert unknown.value.text == STATUS_TEXTS[404]


# --- registration --------------------------------------------------------------------------------------------------


NEW_ADDRESS = "neu@klinikum-demo.kim.telematik"


def test_register_with_a_registration_code_creates_the_account_and_the_directory_entry(
    accountmanager_sim: AmSim,
) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW_ADDRESS, telematik_id=SMCB_TELEMATIK_ID)
    client = sim.client(username=NEW_ADDRESS, password=NEW_PASSWORD)
    client.register(reference_id=code.reference_id, initial_password=code.initial_password, data_time_to_live=30)

    request = next(r for r in sim.am.seen if r.method == "POST")
    assert base64.b64decode(request.headers["iniPassword"]).decode() == code.initial_password
    body = json.loads(request.body)
    assert body["referenceID"] == code.reference_id and body["username"] == NEW_ADDRESS
    assert base64.b64decode(body["password"]).decode() == NEW_PASSWORD
    assert sim.cm.accounts[NEW_ADDRESS] == NEW_PASSWORD
    entry = sim.am.directory_entry(SMCB_TELEMATIK_ID)
    assert entry is not None and NEW_ADDRESS in entry["mail"] and f"{NEW_ADDRESS},1.5" in entry["kimData"]
    account = client.account()
    assert account.registered and account.kim_version == "1.5" and account.data_time_to_live == 30
    assert _pop3_accepts(sim, NEW_ADDRESS, NEW_PASSWORD)


def test_register_is_refused_for_a_wrong_code_or_initial_password_or_card(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW_ADDRESS, telematik_id=SMCB_TELEMATIK_ID)
    client = sim.client(username=NEW_ADDRESS, password=NEW_PASSWORD)
    other_card = sim.client(
        username=NEW_ADDRESS, password=NEW_PASSWORD, card=sim.issue_card(telematik_id="5-2-Andere-Klinik")
    )
    attempts = [
        lambda: client.register(reference_id="REG-FALSCH", initial_password=code.initial_password),
        lambda: client.register(reference_id=code.reference_id, initial_password="falsch"),
        lambda: other_card.register(reference_id=code.reference_id, initial_password=code.initial_password),
    ]
    for attempt in attempts:
        with pytest.raises(AccountManagerError) as refused:
            attempt()
        assert refused.value.status == 401
        assert "Registrierungscode" in refused.value.text
    assert NEW_ADDRESS not in sim.cm.accounts


def test_register_an_address_that_is_taken_is_409(accountmanager_sim: AmSim) -> None:
    code = accountmanager_sim.am.issue_registration_code(AM_OTHER)
    with pytest.raises(AccountManagerError) as taken:
        accountmanager_sim.client(username=AM_OTHER, password=NEW_PASSWORD).register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
    assert (taken.value.status, taken.value.text) == (409, STATUS_TEXTS[409])
    assert accountmanager_sim.cm.accounts[AM_OTHER] == AM_PASSWORD


def test_register_checks_the_password_policy_before_sending(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW_ADDRESS)
    with pytest.raises(PasswordPolicyError) as weak:
        sim.client(username=NEW_ADDRESS, password="kurz").register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
    assert weak.value.display == sim.am.password_policy_display
    assert sim.am.password_policy_display in weak.value.text
    assert _posts(sim) == []


def test_a_password_the_provider_refuses_anyway_is_420(accountmanager_sim: AmSim) -> None:
    # A client-side policy that lets everything through (the provider's regex was not understood): the server decides.
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW_ADDRESS)
    with pytest.raises(AccountManagerError) as refused:
        sim.client(username=NEW_ADDRESS, password="kurz").register(
            reference_id=code.reference_id, initial_password=code.initial_password, policy=ServiceInformation()
        )
    assert refused.value.status == 420
    assert "Regeln des Anbieters" in refused.value.text


def test_register_with_a_version_the_provider_does_not_support_is_422(
    accountmanager_sim_factory: Callable[..., AmSim],
) -> None:
    sim = accountmanager_sim_factory(kim_versions=("1.5", "1.5+"))
    code = sim.am.issue_registration_code(NEW_ADDRESS)
    with pytest.raises(AccountManagerError) as refused:
        sim.client(username=NEW_ADDRESS, password=NEW_PASSWORD).register(
            reference_id=code.reference_id, initial_password=code.initial_password, kim_version="1.0"
        )
    assert (refused.value.status, refused.value.text) == (422, STATUS_TEXTS[422])


def test_register_while_the_directory_entry_is_inactive_or_the_directory_down(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW_ADDRESS)
    client = sim.client(username=NEW_ADDRESS, password=NEW_PASSWORD)
    sim.am.set_directory_entry_active(SMCB_TELEMATIK_ID, False)
    with pytest.raises(AccountManagerError) as locked:
        client.register(reference_id=code.reference_id, initial_password=code.initial_password)
    assert (locked.value.status, locked.value.text) == (423, STATUS_TEXTS[423])
    sim.am.set_directory_entry_active(SMCB_TELEMATIK_ID, True)
    sim.am.set_directory_available(False)
    with pytest.raises(AccountManagerError) as down:
        client.register(reference_id=code.reference_id, initial_password=code.initial_password)
    assert (down.value.status, down.value.text) == (502, STATUS_TEXTS[502])
    assert down.value.retryable
    assert NEW_ADDRESS not in sim.cm.accounts
    # Nothing was used up: the same code works once the directory is back.
    sim.am.set_directory_available(True)
    client.register(reference_id=code.reference_id, initial_password=code.initial_password)
    assert sim.cm.accounts[NEW_ADDRESS] == NEW_PASSWORD


# --- account data, password, version, storage period ---------------------------------------------------------------


def test_account_data_and_status(accountmanager_sim: AmSim) -> None:
    account = accountmanager_sim.client().account()
    assert account.username == AM_ADDRESS
    assert account.registered and account.registration_status == "registered"
    assert account.deregistration_date is None
    assert account.max_mail_size == 734003200
    seen = accountmanager_sim.am.seen[-1]
    assert seen.headers["Authorization"].startswith("Bearer ")
    assert base64.b64decode(seen.headers["password"]).decode() == AM_PASSWORD


def test_change_password_changes_the_cm_login(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    client = sim.client()
    client.change_password(NEW_PASSWORD)
    assert client.password == NEW_PASSWORD
    assert sim.cm.accounts[AM_ADDRESS] == NEW_PASSWORD
    assert not _pop3_accepts(sim, AM_ADDRESS, AM_PASSWORD)
    assert _pop3_accepts(sim, AM_ADDRESS, NEW_PASSWORD)
    # The client goes on with the new password; one that still has the old one is refused.
    assert client.account().registered
    with pytest.raises(AccountManagerError) as old:
        sim.client().account()
    assert old.value.status == 401


def test_change_password_against_the_policy_is_refused_before_sending(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    client = sim.client()
    for weak in ("kurz", "nurkleinbuchstaben1!", "OhneZiffer!!!!", "x" * 300):
        with pytest.raises(PasswordPolicyError) as refused:
            client.change_password(weak)
        assert sim.am.password_policy_display in refused.value.text
    assert _posts(sim) == []
    assert client.password == AM_PASSWORD and sim.cm.accounts[AM_ADDRESS] == AM_PASSWORD


def test_change_password_uses_a_given_policy_without_asking(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    policy = ServiceInformation(password_policy_regex=r"[a-z]{4}", password_policy_display="vier Kleinbuchstaben")
    with pytest.raises(PasswordPolicyError) as refused:
        sim.client().change_password(NEW_PASSWORD, policy=policy)
    assert refused.value.text.endswith("vier Kleinbuchstaben")
    assert not any(r.path.endswith("/serviceinfo") for r in sim.am.seen)


# A catastrophic policy: (a|aa)+ backtracks through every way of splitting the a's (Fibonacci of their number)
# before it can say that the "!" at the end does not fit.
HOSTILE_POLICY = r"^(a|aa)+$"
HOSTILE_PASSWORD = "a" * 60 + "!"


def test_a_catastrophic_policy_from_the_server_is_a_clear_error_not_a_hung_worker(
    accountmanager_sim_factory: Callable[..., AmSim],
) -> None:
    sim = accountmanager_sim_factory(password_policy=HOSTILE_POLICY, password_policy_display="nur a")
    client = sim.client()
    started = time.monotonic()
    with pytest.raises(AccountManagerError) as refused:
        client.change_password(HOSTILE_PASSWORD)
    assert time.monotonic() - started < 5
    assert (refused.value.code, refused.value.text) == ("bad_policy", BAD_POLICY_TEXT)
    assert _posts(sim) == [] and client.password == AM_PASSWORD
    # A harmless password under the same policy is still judged (quickly, and refused: it has no "a").
    with pytest.raises(PasswordPolicyError):
        client.change_password(NEW_PASSWORD)
    # The form on the KIM page evaluates the same policy: a form error, the same text.
    from operations.forms import PasswordForm

    form = PasswordForm(
        {"password": HOSTILE_PASSWORD, "password_repeat": HOSTILE_PASSWORD}, policy_regex=HOSTILE_POLICY
    )
    assert not form.is_valid() and form.errors["password"] == [BAD_POLICY_TEXT]


def test_an_overlong_policy_or_one_that_takes_minutes_to_compile_is_refused() -> None:
    policy = ServiceInformation(password_policy_regex="a" * (POLICY_MAX_CHARS + 1))
    with pytest.raises(AccountManagerError) as refused:
        policy.check_password(NEW_PASSWORD)
    assert refused.value.code == "bad_policy"
    # Short, but regex needs minutes to compile it (its timeout covers only matching): tried in a child process.
    slow = ServiceInformation(password_policy_regex="(?:(?:(?:a{256}){256}){256}){256}")
    started = time.monotonic()
    with pytest.raises(AccountManagerError) as refused:
        slow.check_password(NEW_PASSWORD)
    assert time.monotonic() - started < POLICY_COMPILE_TIMEOUT + 5
    assert (refused.value.code, refused.value.text) == ("bad_policy", BAD_POLICY_TEXT)
    # A policy Python cannot read is still left to the provider.
    assert ServiceInformation(password_policy_regex="(?<x>[").password_matches(NEW_PASSWORD)


def _plain_client(
    sim: AmSim, *, max_response_bytes: int = MAX_RESPONSE_BYTES, timeout: float = 10
) -> AccountManagerClient:
    """Without the OpenAPI check's response hook (which reads every body whole before the client sees it)."""
    return AccountManagerClient(
        AccountManagerConfig(
            base_url=sim.base_url, ca_pem=sim.am.ca_pem, timeout=timeout, max_response_bytes=max_response_bytes
        ),
        username=AM_ADDRESS,
        password=AM_PASSWORD,
        token_provider=lambda: sim.card.token(sim.base_url),
    )


def test_an_endless_answer_is_refused_after_the_limit_not_read_whole(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    sim.am.arm_fault("oversize", path="/ServiceInformation/")
    client = _plain_client(sim)
    with pytest.raises(AccountManagerError) as refused:
        client.service_information()
    assert (refused.value.status, refused.value.code, refused.value.text) == (200, "too_large", TOO_LARGE_TEXT)
    # The server could hand over only what the client read and the socket buffers held: far from all of it.
    assert sim.am.oversize_sent < OVERSIZE_BYTES / 4
    # The connection was given up, the next call works.
    assert client.service_information().jwt_expiration == 300


def test_an_answer_over_the_limit_is_refused_by_its_declared_length(accountmanager_sim: AmSim) -> None:
    with pytest.raises(AccountManagerError) as refused:
        _plain_client(accountmanager_sim, max_response_bytes=100).service_information()
    assert refused.value.code == "too_large"
    assert MAX_RESPONSE_BYTES >= 64 * 1024  # room for every answer the API defines


def test_kim_version_large_messages(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    assert "1.5+" in KIM_VERSION_LARGE_WARNING and "15 MiB" in KIM_VERSION_LARGE_WARNING
    client.set_kim_version("1.5+")
    account = client.account()
    assert account.kim_version == "1.5+" and account.large_messages
    entry = accountmanager_sim.am.directory_entry(SMCB_TELEMATIK_ID)
    assert entry is not None and f"{AM_ADDRESS},1.5+" in entry["kimData"]
    with pytest.raises(AccountManagerError) as unknown:
        client.set_kim_version("2.0")
    assert unknown.value.code == "invalid"


def test_data_time_to_live(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    client.set_data_time_to_live(180)
    assert client.account().data_time_to_live == 180
    assert client.limits().data_time_to_live == 180
    for bad in (9, 366):
        with pytest.raises(AccountManagerError) as refused:
            client.set_data_time_to_live(bad)
        assert refused.value.code == "invalid" and "10 und 365" in refused.value.text


# --- deregistration ------------------------------------------------------------------------------------------------


def test_deregister_and_revoke(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    with pytest.raises(AccountManagerError) as not_yet:
        client.revoke_deregistration()
    assert not_yet.value.status == 403 and "nicht abgemeldet" in not_yet.value.text
    client.deregister()
    account = client.account()
    assert not account.registered and account.registration_status == "deregistered"
    assert account.deregistration_date is not None
    assert dt.timedelta(days=29) < account.deregistration_date - NOW < dt.timedelta(days=31)
    # POP3 stays usable until the deregistration date.
    assert _pop3_accepts(accountmanager_sim, AM_ADDRESS, AM_PASSWORD)
    client.revoke_deregistration()
    assert client.account().registered


# --- out of office -------------------------------------------------------------------------------------------------


def test_out_of_office_round_trip(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    assert client.out_of_office() == OutOfOffice(active=False)
    note = OutOfOffice(
        active=True, start=NOW, end=NOW + dt.timedelta(days=7), message="Bis 7. Dezember abwesend.\nVertretung: Labor"
    )
    client.set_out_of_office(note)
    assert client.out_of_office() == note
    stored = AbsenceStore(accountmanager_sim.cm.data_dir).get(AM_ADDRESS)
    assert stored is not None and stored.applies(NOW + dt.timedelta(hours=1))

    client.set_out_of_office(OutOfOffice(active=False))
    body = json.loads(accountmanager_sim.am.seen[-1].body)
    assert body == {"active": False}
    # Switching off keeps dates and text (the provider's rule), so switching on again is one click.
    assert client.out_of_office() == OutOfOffice(False, note.start, note.end, note.message)


def test_out_of_office_text_of_2048_characters_passes_and_2049_does_not(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    longest = OutOfOffice(True, NOW, NOW + dt.timedelta(days=1), "ä" * 2048)
    client.set_out_of_office(longest)
    assert client.out_of_office().message == "ä" * 2048
    posts = len(_posts(accountmanager_sim))
    with pytest.raises(AccountManagerError) as too_long:
        client.set_out_of_office(OutOfOffice(True, NOW, NOW + dt.timedelta(days=1), "x" * 2049))
    assert too_long.value.code == "invalid" and "2048" in too_long.value.text
    assert len(_posts(accountmanager_sim)) == posts


def test_out_of_office_needs_dates_and_text_to_activate(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    for note in (
        OutOfOffice(True, None, NOW, "x"),
        OutOfOffice(True, NOW, NOW + dt.timedelta(days=1), "  "),
        OutOfOffice(True, NOW, NOW - dt.timedelta(days=1), "x"),
    ):
        with pytest.raises(AccountManagerError) as refused:
            client.set_out_of_office(note)
        assert refused.value.code == "invalid"
    assert _posts(accountmanager_sim) == []


# --- every error status, with its German text -----------------------------------------------------------------------

# An operation whose OpenAPI description lists the status (the answer is validated against it).
STATUS_CASES = [
    (400, "account"),
    (401, "account"),
    (404, "account"),
    (409, "register"),
    (420, "password"),
    (422, "version"),
    (423, "version"),
    (500, "account"),
    (502, "account"),
]


@pytest.mark.parametrize(("status", "operation"), STATUS_CASES)
def test_error_statuses_have_german_texts(accountmanager_sim: AmSim, status: int, operation: str) -> None:
    sim = accountmanager_sim
    client = sim.client()
    calls: dict[str, Callable[[], object]] = {
        "account": client.account,
        "password": lambda: client.change_password(NEW_PASSWORD),
        "version": lambda: client.set_kim_version("1.5+"),
        "register": lambda: sim.client(username=NEW_ADDRESS, password=NEW_PASSWORD).register(
            reference_id="REG-X", initial_password="ini"
        ),
    }
    sim.am.arm_fault("status", status=status, path="/AccountMgmt/")
    with pytest.raises(AccountManagerError) as failed:
        calls[operation]()
    error = failed.value
    assert error.status == status and error.code == f"http_{status}"
    expected = {
        ("register", 409): STATUS_TEXTS[409],
        ("password", 420): "Das neue Passwort entspricht nicht den Passwortregeln des Anbieters.",
    }.get((operation, status), STATUS_TEXTS[status])
    assert error.text == expected
    assert "Armed fault." in error.detail  # the provider's message and traceId, for the log
    assert error.retryable == (status in (500, 502))


def test_an_expired_token_is_401(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    config = sim.config()
    past = NOW.timestamp() - 3600
    client = sim.client(token_provider=lambda: sim.card.token(config.audience, now=past))
    with pytest.raises(AccountManagerError) as refused:
        client.account()
    assert refused.value.status == 401 and "Kartenauthentisierung" in refused.value.text
    assert "expired" in refused.value.detail


def test_an_answer_that_is_not_json_is_a_clear_error(accountmanager_sim: AmSim) -> None:
    # A proxy's HTML error page with status 200: not the provider's answer.
    sim = accountmanager_sim

    def html_proxy(response: requests.Response, *args: object, **kwargs: object) -> None:
        response._content = b"<html>Proxy</html>"
        response.headers["Content-Type"] = "text/html"

    session = requests.Session()
    session.hooks["response"].append(html_proxy)
    client = AccountManagerClient(
        sim.config(),
        username=AM_ADDRESS,
        password=AM_PASSWORD,
        token_provider=lambda: sim.card.token(sim.base_url),
        session=session,
    )
    with pytest.raises(AccountManagerError) as bad:
        client.account()
    assert (
        bad.value.code == "bad_response"
        and bad.value.text == "Der Account Manager hat eine unerwartete Antwort geschickt."
    )


def test_a_deregistration_date_at_the_calendars_end_is_a_clear_error(accountmanager_sim: AmSim) -> None:
    # 9999-12-31T23:59:59Z: a valid timestamp without a Berlin time, which the account page would fail to show.
    sim = accountmanager_sim

    def far_future(response: requests.Response, *args: object, **kwargs: object) -> None:
        data = json.loads(response.content)
        data["deregDate"] = 253402300799
        response._content = json.dumps(data).encode()

    session = requests.Session()
    session.hooks["response"].append(far_future)
    client = AccountManagerClient(
        sim.config(),
        username=AM_ADDRESS,
        password=AM_PASSWORD,
        token_provider=lambda: sim.card.token(sim.base_url),
        session=session,
    )
    with pytest.raises(AccountManagerError) as bad:
        client.account()
    assert bad.value.code == "bad_response" and "out of range" in bad.value.detail


# --- the network ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_nested_deeper_than_the_decoder_goes_is_a_clear_error(accountmanager_sim: AmSim, status: int) -> None:
    # 100 kB of "[": far below the size limit, far beyond Python's recursion limit.
    sim = accountmanager_sim

    def nested(response: requests.Response, *args: object, **kwargs: object) -> None:
        response._content = b"[" * 100_000
        response.status_code = status

    session = requests.Session()
    session.hooks["response"].append(nested)
    client = AccountManagerClient(
        sim.config(),
        username=AM_ADDRESS,
        password=AM_PASSWORD,
        token_provider=lambda: sim.card.token(sim.base_url),
        session=session,
    )
    with pytest.raises(AccountManagerError) as bad:
        client.account()
    assert bad.value.code == ("bad_response" if status == 200 else "http_500")
    assert bad.value.text == str(BAD_RESPONSE_TEXT if status == 200 else STATUS_TEXTS[500])


def test_account_manager_down(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    accountmanager_sim.am.stop()
    with pytest.raises(AccountManagerError) as down:
        client.account()
    assert (down.value.status, down.value.code, down.value.text) == (None, "unreachable", UNREACHABLE_TEXT)
    assert down.value.retryable


def test_account_manager_that_does_not_answer_times_out(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    sim.am.arm_fault("stall", path="/AccountMgmt/")
    try:
        with pytest.raises(AccountManagerError) as slow:
            sim.client(timeout=0.5).account()
    finally:
        sim.am.release()
    assert (slow.value.code, slow.value.text) == ("timeout", TIMEOUT_TEXT)
    assert slow.value.retryable


def test_an_answer_trickling_in_byte_by_byte_times_out_as_a_whole(accountmanager_sim: AmSim) -> None:
    # Every read gets a byte long before its timeout; only a limit on the whole ends the wait.
    sim = accountmanager_sim
    sim.am.arm_fault("trickle", path="/ServiceInformation/")
    started = time.monotonic()
    try:
        with pytest.raises(AccountManagerError) as slow:
            _plain_client(sim, timeout=1.0).service_information()
    finally:
        sim.am.release()
    assert (slow.value.code, slow.value.text) == ("timeout", TIMEOUT_TEXT)
    assert "answer not complete" in slow.value.detail
    assert time.monotonic() - started < 10


def test_a_connection_cut_without_answer(accountmanager_sim: AmSim) -> None:
    accountmanager_sim.am.arm_fault("drop", path="/AccountMgmt/")
    with pytest.raises(AccountManagerError) as cut:
        accountmanager_sim.client().account()
    assert cut.value.code == "unreachable"


def test_tls_certificate_of_an_unknown_ca_is_refused(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    config = AccountManagerConfig(base_url=sim.base_url, ca_pem=sim.cm.client_ca_pem.encode(), timeout=5)
    client = AccountManagerClient(config, username=AM_ADDRESS, password=AM_PASSWORD, token_provider=lambda: "x")
    with pytest.raises(AccountManagerError) as refused:
        client.service_information()
    assert (refused.value.code, refused.value.text) == ("tls", TLS_TEXT)
    assert not sim.am.seen


def test_the_token_provider_is_asked_only_for_the_account_manager_interface(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    asked: list[str] = []

    def provider() -> str:
        asked.append("x")
        return sim.card.token(sim.base_url)

    client = sim.client(token_provider=provider)
    client.service_information()
    client.limits()
    assert asked == []
    client.account()
    assert asked == ["x"]


# --- the JWT the portal builds ----------------------------------------------------------------------------------------


def test_jwt_header_claims_and_signature(accountmanager_sim: AmSim) -> None:
    card = accountmanager_sim.card
    token, expires = build_jwt(
        certificate_der=card.cert_der, sign_digest=card.sign, audience="https://am.example:443", issuer="KIMPortal",
        lifetime=300, now=1_800_000_000,
    )  # fmt: skip
    head, claims, signature = token.split(".")

    def part(value: str) -> dict[str, object]:
        return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))

    header = part(head)
    assert header["alg"] == "BP256R1" and header["typ"] == "JWT"
    assert header["x5c"] == [base64.b64encode(card.cert_der).decode()]
    body = part(claims)
    assert body["aud"] == "https://am.example:443" and body["sub"] == SMCB_TELEMATIK_ID and body["iss"] == "KIMPortal"
    assert (body["iat"], body["nbf"], body["exp"]) == (1_800_000_000, 1_800_000_000, 1_800_000_300)
    assert expires == 1_800_000_300.0
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert len(raw) == 64
    key = x509.load_der_x509_certificate(card.cert_der).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(f"{head}.{claims}".encode())
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    key.verify(utils.encode_dss_signature(r, s), digest.finalize(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_an_rsa_card_signs_with_pss(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    card = sim.issue_card(rsa_key=True)
    head = card.token(sim.base_url).split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    assert header["alg"] == "PS256"
    assert sim.client(card=card).account().registered


# --- the OpenAPI check itself -----------------------------------------------------------------------------------------


def test_every_exchange_was_checked_against_the_openapi_files(accountmanager_sim: AmSim) -> None:
    client = accountmanager_sim.client()
    client.service_information()
    client.limits()
    client.account()
    client.set_out_of_office(OutOfOffice(True, NOW, NOW + dt.timedelta(days=1), "weg"))
    assert [(m, s) for m, _, s in accountmanager_sim.openapi.validated] == [
        ("GET", 200),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 204),
    ]
    assert accountmanager_sim.openapi.failures == []


def test_the_openapi_check_catches_what_the_spec_does_not_allow(accountmanager_sim: AmSim) -> None:
    check = OpenApiCheck()

    def answer(status: int, body: dict[str, object], **headers: str) -> requests.Response:
        request = requests.Request(
            "GET",
            f"{accountmanager_sim.base_url}/AccountMgmt/v2.4/account/{AM_ADDRESS}",
            headers={"Authorization": "Bearer a.b.c", "password": "YWJj", **headers},
        ).prepare()
        response = requests.Response()
        response.status_code, response.request = status, request
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    check(answer(200, {"username": AM_ADDRESS, "regStat": "registered"}))
    assert check.failures == []
    check(answer(200, {"username": AM_ADDRESS, "regStat": "gesperrt"}))  # not in the enum
    check(answer(409, {"message": "x"}))  # getAccount has no 409
    check(answer(200, {"username": AM_ADDRESS}, password="%%%"))  # not base64
    assert len(check.failures) == 3


# --- amauth: the JWT through the simulated Konnektor's ExternalAuthenticate, the factory for a mailbox -------------


@pytest.fixture
def konnektor_with_smcb(settings, konnektor_sim: KonnektorSimulator) -> KonnektorSimulator:
    konnektor_sim.add_smcb("Klinikum Demo", SMCB_TELEMATIK_ID, workplaces=(WORKPLACE,))
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MODE = "plain"
    settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
    settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = CLIENT_SYSTEM
    clear_token_cache()
    yield konnektor_sim
    clear_token_cache()


def _account(sim: AmSim, settings, **kwargs: object) -> KimAccount:  # type: ignore[no-untyped-def]
    sim.configure(settings)
    account: KimAccount = KimAccountFactory(
        mailbox__address=AM_ADDRESS,
        mandant_id=MANDANT,
        client_system_id=CLIENT_SYSTEM,
        workplace_id=WORKPLACE,
        password=AM_PASSWORD,
        **kwargs,
    )
    return account


@pytest.mark.django_db
def test_account_manager_client_for_a_mailbox_signs_with_the_konnektors_smcb(
    settings, konnektor_with_smcb: KonnektorSimulator, accountmanager_sim_factory: Callable[..., AmSim]
) -> None:
    sim = accountmanager_sim_factory(pki_data_dir=konnektor_with_smcb.data_dir)
    with account_manager_client(_account(sim, settings), session=sim.openapi.session()) as client:
        assert client.username == AM_ADDRESS and client.password == AM_PASSWORD
        assert client.account().registered
        client.set_kim_version("1.5+")
    token = sim.am.seen[-1].headers["Authorization"][len("Bearer ") :]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=" * (-len(token.split(".")[0]) % 4)))
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert "CN=TISIM SMCB-CA TEST-ONLY" in cert.issuer.rfc4514_string()
    entry = sim.am.directory_entry(SMCB_TELEMATIK_ID)
    assert entry is not None and f"{AM_ADDRESS},1.5+" in entry["kimData"]


@pytest.mark.django_db
def test_an_rsa_only_smcb_signs_with_pss(
    settings, konnektor_sim: KonnektorSimulator, accountmanager_sim_factory: Callable[..., AmSim]
) -> None:
    konnektor_sim.add_smcb("Klinikum Demo", SMCB_TELEMATIK_ID, workplaces=(WORKPLACE,), aut_algorithms=("RSA",))
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MANDANT, settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = MANDANT, CLIENT_SYSTEM
    clear_token_cache()
    sim = accountmanager_sim_factory(pki_data_dir=konnektor_sim.data_dir)
    with account_manager_client(_account(sim, settings), session=sim.openapi.session()) as client:
        assert client.account().registered
    head = sim.am.seen[-1].headers["Authorization"][len("Bearer ") :].split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["alg"] == "PS256"
    clear_token_cache()


@pytest.mark.django_db
def test_the_token_is_reused_until_shortly_before_it_expires(
    settings, konnektor_with_smcb: KonnektorSimulator, accountmanager_sim_factory: Callable[..., AmSim]
) -> None:
    sim = accountmanager_sim_factory(pki_data_dir=konnektor_with_smcb.data_dir)
    account = _account(sim, settings)
    opened: list[int] = []

    def konnektor() -> KonnektorClient:
        opened.append(1)
        return konnektor_client()

    clock = [time.time()]
    provider = SmcbTokenProvider(
        konnektor=konnektor,
        konnektor_url=konnektor_with_smcb.base_url,
        ctx=account_call_context(account),
        audience=sim.base_url,
        lifetime=300,
        clock=lambda: clock[0],
    )
    first = provider()
    assert provider() == first and len(opened) == 1
    assert sim.client(token_provider=lambda: first).account().registered
    clock[0] += 300 - RENEW_BEFORE - 1
    assert provider() == first and len(opened) == 1
    clock[0] += 2  # within RENEW_BEFORE of the end: a new one
    second = provider()
    assert second != first and len(opened) == 2
    claims = second.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["iat"] == int(clock[0])


@pytest.mark.django_db
def test_no_smcb_in_the_konnektor_is_a_clear_error(
    settings, konnektor_sim: KonnektorSimulator, accountmanager_sim: AmSim
) -> None:
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MANDANT, settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = MANDANT, CLIENT_SYSTEM
    clear_token_cache()
    with (
        account_manager_client(
            _account(accountmanager_sim, settings), session=accountmanager_sim.openapi.session()
        ) as client,
        pytest.raises(AccountManagerError) as failed,
    ):
        client.account()
    assert failed.value.code == "no_smcb" and "SMC-B" in failed.value.text
    assert not any(r.path.startswith("/AccountMgmt/") for r in accountmanager_sim.am.seen)


@pytest.mark.django_db
def test_konnektor_down_is_a_clear_error(
    settings, konnektor_with_smcb: KonnektorSimulator, accountmanager_sim: AmSim
) -> None:
    account = _account(accountmanager_sim, settings)
    konnektor_with_smcb.stop()
    with (
        account_manager_client(account, session=accountmanager_sim.openapi.session()) as client,
        pytest.raises(AccountManagerError) as failed,
    ):
        client.account()
    assert failed.value.code == "konnektor"
    assert failed.value.text.startswith("Authentisierung mit der SMC-B fehlgeschlagen:")
    # The service information needs no card: it still works.
    with account_manager_client(account, session=accountmanager_sim.openapi.session()) as client:
        assert client.service_information().jwt_expiration == 300


def test_errors_survive_pickling() -> None:
    # Celery carries exceptions between processes.
    import pickle

    error = AccountManagerError(423, "http_423", STATUS_TEXTS[423], detail="locked / 19aa")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.status, copy.code, copy.text, copy.detail) == (423, "http_423", STATUS_TEXTS[423], "locked / 19aa")
    policy = pickle.loads(pickle.dumps(PasswordPolicyError("mindestens 12 Zeichen")))  # noqa: S301
    assert isinstance(policy, PasswordPolicyError) and policy.text.endswith("mindestens 12 Zeichen")


def test_the_texts_are_translated_where_the_portal_speaks_english(accountmanager_sim: AmSim) -> None:
    from django.utils import translation

    sim = accountmanager_sim
    with translation.override("en"):
        # A lazy text is read in the active language; an error keeps the text of the language it was raised in.
        assert str(TIMEOUT_TEXT) == "The Account Manager did not answer in time. Please try again later."
        with pytest.raises(AccountManagerError) as unknown:
            sim.client(username="niemand@klinikum-test.kim.telematik").account()
        assert unknown.value.text == "The provider has no such KIM account."
        with pytest.raises(AccountManagerError) as invalid:
            sim.client().set_data_time_to_live(5)
        assert invalid.value.text == "The retention period must be between 10 and 365 days."
        with pytest.raises(PasswordPolicyError) as weak:
            sim.client().change_password("kurz")
        assert weak.value.text.startswith("The new password does not meet the provider's password rules.")
        assert "KIM Attachment Service" in str(KIM_VERSION_LARGE_WARNING)
    assert unknown.value.text == "The provider has no such KIM account."
    with translation.override("de"):
        assert str(STATUS_TEXTS[404]) == "Das KIM-Konto ist beim Anbieter nicht vorhanden."


@pytest.mark.django_db
def test_the_smcb_texts_are_translated_where_the_portal_speaks_english(
    settings, konnektor_with_smcb: KonnektorSimulator, accountmanager_sim: AmSim
) -> None:
    from django.utils import translation

    account = _account(accountmanager_sim, settings)
    settings.KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN = "80276000000000000000"  # no such card in the Konnektor
    with translation.override("en"):
        assert str(NO_SMCB_TEXT).startswith("No SMC-B is inserted in the Konnektor for this context;")
        with (
            account_manager_client(account, session=accountmanager_sim.openapi.session()) as client,
            pytest.raises(AccountManagerError) as no_card,
        ):
            client.account()
    assert no_card.value.code == "no_smcb"
    assert no_card.value.text == (
        "No SMC-B is inserted in the Konnektor for this context; the Account Manager requires its signature."
    )
    settings.KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN = ""
    konnektor_with_smcb.stop()
    with translation.override("en"):
        with (
            account_manager_client(account, session=accountmanager_sim.openapi.session()) as client,
            pytest.raises(AccountManagerError) as down,
        ):
            client.account()
    assert down.value.code == "konnektor"
    assert down.value.text.startswith("Authentication with the SMC-B failed: Konnektor not reachable")
    with translation.override("de"):
        assert str(NO_SMCB_TEXT).startswith("Im Konnektor ist keine SMC-B")
        with (
            account_manager_client(account, session=accountmanager_sim.openapi.session()) as client,
            pytest.raises(AccountManagerError) as german,
        ):
            client.account()
    assert german.value.text.startswith("Authentisierung mit der SMC-B fehlgeschlagen: Konnektor nicht erreichbar")
