"""The simulated Account Manager over its real HTTPS socket: the JWT check, registration codes, the password change
reaching the CM's POP3 login, the out-of-office note answered by the simulated Fachdienst, ``python -m tisim``."""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.accountmanager_sim import (
    AM_ADDRESS,
    AM_OTHER,
    AM_PASSWORD,
    SMCB_TELEMATIK_ID,
    AmSim,
    OpenApiCheck,
    foreign_ca,
    issue_smcb,
)
from tests.tisim.support import REPO, pop3_connect, pop3_user, smtp_connect, smtp_user
from tisim.accountmanager import AccountManagerSimulator, ConfigAccounts
from tisim.cm import CMSimulator
from tisim.cm.autoreply import DIENSTKENNUNG, AbsenceStore, answer_absences
from tisim.cm.messages import get_header
from tisim.config import CMConfig
from tisim.konnektor.pki import Pki, pki_directory

NEW_PASSWORD = "Neues-Passwort-2027?"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(
    sim: AmSim,
    method: str,
    path: str,
    *,
    token: str | None = None,
    password: str | None = AM_PASSWORD,
    body: Any = None,
    headers: dict[str, str] | None = None,
    check_request: bool = True,
) -> requests.Response:
    """A raw request to the simulator; the answer is validated against the OpenAPI files (the request too, unless
    the test sends a deliberately invalid one)."""
    sent = {"Accept": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if password is not None:
        sent["password"] = _b64(password)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json; charset=utf-8")
    check = OpenApiCheck(check_requests=check_request)
    session = check.session()
    try:
        response = session.request(
            method, sim.base_url + path, headers=sent, data=data, verify=str(sim.am.ca_path), timeout=10
        )
    finally:
        session.close()
    sim.openapi.failures.extend(check.failures)
    return response


ACCOUNT = f"/AccountMgmt/v2.4/account/{AM_ADDRESS}"


def token(sim: AmSim, **kwargs: Any) -> str:
    return sim.card.token(sim.base_url, **kwargs)


# --- the JWT ---------------------------------------------------------------------------------------------------------


def test_a_valid_token_and_password_are_accepted(accountmanager_sim: AmSim) -> None:
    response = call(accountmanager_sim, "GET", ACCOUNT, token=token(accountmanager_sim))
    assert response.status_code == 200
    assert response.json()["username"] == AM_ADDRESS
    assert "password" not in response.json()


def _tampered(value: str) -> str:
    head, claims, signature = value.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["exp"] += 3600
    return f"{head}.{base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b'=').decode()}.{signature}"


def _none_alg(value: str) -> str:
    head, claims, _ = value.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    decoded["alg"] = "none"
    return f"{base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b'=').decode()}.{claims}.x"


BAD_TOKENS: dict[str, Callable[[AmSim], str]] = {
    "expired": lambda sim: token(sim, now=time.time() - 3600),
    "not yet valid": lambda sim: token(sim, now=time.time() + 3600),
    "lifetime beyond jwtExpiration": lambda sim: token(sim, lifetime=3600),
    "foreign audience": lambda sim: sim.card.token("https://anderer-anbieter.example"),
    "tampered claims": lambda sim: _tampered(token(sim)),
    "alg none": lambda sim: _none_alg(token(sim)),
    "foreign CA": lambda sim: issue_smcb(*foreign_ca()).token(sim.base_url),
    "expired certificate": lambda sim: sim.issue_card(
        not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    ).token(sim.base_url),
    "eHBA instead of SMC-B": lambda sim: issue_smcb(
        Pki(pki_directory(sim.am.pki_data_dir)).qes_ca.cert, Pki(pki_directory(sim.am.pki_data_dir)).qes_ca.key
    ).token(sim.base_url),
    "garbage": lambda sim: "abc.def.ghi",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_tokens_are_401(accountmanager_sim: AmSim, kind: str) -> None:
    response = call(accountmanager_sim, "GET", ACCOUNT, token=BAD_TOKENS[kind](accountmanager_sim))
    assert response.status_code == 401, response.text
    assert response.json()["message"].startswith("Authentication failed")
    assert len(response.json()["traceId"]) == 16


def test_no_bearer_token_is_401(accountmanager_sim: AmSim) -> None:
    response = call(accountmanager_sim, "GET", ACCOUNT, check_request=False)
    assert response.status_code == 401


def test_another_institutions_card_cannot_use_the_account(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    assert call(sim, "GET", ACCOUNT, token=token(sim)).status_code == 200  # binds the account to the first card
    stranger = sim.issue_card(telematik_id="5-2-Andere-Klinik").token(sim.base_url)
    assert call(sim, "GET", ACCOUNT, token=stranger).status_code == 401


def test_wrong_or_missing_password_header(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    assert call(sim, "GET", ACCOUNT, token=token(sim), password="falsch").status_code == 401
    assert call(sim, "GET", ACCOUNT, token=token(sim), password=None, check_request=False).status_code == 401
    not_b64 = call(
        sim, "GET", ACCOUNT, token=token(sim), password=None, headers={"password": "%%%"}, check_request=False
    )
    assert not_b64.status_code == 400


# --- input checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (ACCOUNT, b"{not json", 400),
        (ACCOUNT, [1, 2], 400),
        (ACCOUNT, {"dataTimeToLive": 5}, 400),
        (ACCOUNT, {"dataTimeToLive": "90"}, 400),
        (ACCOUNT, {"username": "anders@klinikum-demo.kim.telematik"}, 400),
        (ACCOUNT, {"kimVersion": "9.9"}, 422),
        (ACCOUNT, {"password": _b64("kurz")}, 420),
        (ACCOUNT + "/outofoffice", {"active": True, "message": "x" * 2049, "startDate": "2026-01-01T00:00:00Z"}, 400),
        (ACCOUNT + "/outofoffice", {"active": True, "message": "x"}, 400),
        (ACCOUNT + "/outofoffice", {"active": "ja"}, 400),
        (ACCOUNT + "/outofoffice", {"active": False}, 400),  # the first call needs every field
        (
            ACCOUNT + "/outofoffice",
            {"active": True, "message": "x", "startDate": "2026-02-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},
            400,
        ),
    ],
)
def test_bad_input_is_refused(accountmanager_sim: AmSim, path: str, body: Any, status: int) -> None:
    sim = accountmanager_sim
    response = call(sim, "PUT", path, token=token(sim), body=body, check_request=False)
    assert response.status_code == status, response.text
    assert sim.cm.accounts[AM_ADDRESS] == AM_PASSWORD
    assert AbsenceStore(sim.cm.data_dir).get(AM_ADDRESS) is None


def test_a_huge_body_is_refused_without_reading_it(accountmanager_sim: AmSim) -> None:
    response = call(
        accountmanager_sim, "PUT", ACCOUNT, token=token(accountmanager_sim), body=b"{" + b" " * 200_000 + b"}",
        check_request=False,
    )  # fmt: skip
    assert response.status_code == 400


def test_unknown_operations_are_404(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    otp = sim.base_url + "/AccountMgmt/v2.4/account/x@y.kim.telematik/OTP"
    assert requests.get(otp, verify=str(sim.am.ca_path), timeout=10).status_code == 404
    assert requests.get(sim.base_url + "/admin", verify=str(sim.am.ca_path), timeout=10).status_code == 404


# --- registration codes ----------------------------------------------------------------------------------------------

NEW = "neu@klinikum-demo.kim.telematik"


def _register(sim: AmSim, reference_id: str, ini_password: str, *, address: str = NEW) -> requests.Response:
    body = {"referenceID": reference_id, "username": address, "password": _b64(NEW_PASSWORD), "kimVersion": "1.5"}
    return call(
        sim, "POST", "/AccountMgmt/v2.4/account", token=token(sim), password=None, body=body,
        headers={"iniPassword": _b64(ini_password)},
    )  # fmt: skip


def test_registration_code_wrong_or_used_twice(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW)
    assert _register(sim, "REG-000000000000", code.initial_password).status_code == 401
    assert _register(sim, code.reference_id, "falsch").status_code == 401
    # The code names the address it registers.
    assert _register(sim, code.reference_id, code.initial_password, address=AM_OTHER).status_code == 401
    assert NEW not in sim.cm.accounts
    assert _register(sim, code.reference_id, code.initial_password).status_code == 204
    assert sim.cm.accounts[NEW] == NEW_PASSWORD
    assert _register(sim, code.reference_id, code.initial_password).status_code == 401


def test_no_vzd_mail_entry_keeps_the_address_out_of_the_directory(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    code = sim.am.issue_registration_code(NEW)
    body = {
        "referenceID": code.reference_id,
        "username": NEW,
        "password": _b64(NEW_PASSWORD),
        "kimVersion": "1.5",
        "noVzdMailEntry": True,
    }
    response = call(
        sim, "POST", "/AccountMgmt/v2.4/account", token=token(sim), password=None, body=body,
        headers={"iniPassword": _b64(code.initial_password)},
    )  # fmt: skip
    assert response.status_code == 204
    entry = sim.am.directory_entry(SMCB_TELEMATIK_ID)
    assert entry is None or NEW not in entry["mail"]


def test_reg_code_command_issues_a_code_a_running_simulator_accepts(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    out = subprocess.run(
        [sys.executable, "-m", "tisim", "accountmanager", "reg-code", "--address", NEW,
         "--data-dir", str(sim.am.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    printed = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert printed["address"] == NEW and printed["referenceID"].startswith("REG-")
    assert _register(sim, printed["referenceID"], printed["iniPassword"]).status_code == 204


def test_reg_code_command_refuses_a_bad_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tisim", "accountmanager", "reg-code", "--address", "kein address",
         "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "not a valid mail address" in result.stderr


def test_directory_commands_reach_a_running_simulator(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim

    def tisim(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "tisim", "accountmanager", *args, "--data-dir", str(sim.am.data_dir)],
            cwd=REPO, check=True, timeout=60, capture_output=True,
        )  # fmt: skip

    tisim("vzd", "--down")
    assert call(sim, "DELETE", ACCOUNT, token=token(sim)).status_code == 502
    tisim("vzd", "--up")
    tisim("entry", "--telematik-id", SMCB_TELEMATIK_ID, "--inactive")
    assert call(sim, "PUT", ACCOUNT, token=token(sim), body={"kimVersion": "1.5+"}).status_code == 423
    tisim("entry", "--telematik-id", SMCB_TELEMATIK_ID, "--active")
    assert call(sim, "PUT", ACCOUNT, token=token(sim), body={"kimVersion": "1.5+"}).status_code == 204


# --- password change -> the CM's login ------------------------------------------------------------------------------


def _pop3_login(sim: AmSim, address: str, password: str) -> bool:
    conn = pop3_connect(sim.cm)
    try:
        conn.user(pop3_user(address))
        conn.pass_(password)
        conn.quit()
        return True
    except Exception:
        conn.close()
        return False


def test_password_change_changes_the_pop3_login(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    assert _pop3_login(sim, AM_ADDRESS, AM_PASSWORD)
    response = call(sim, "PUT", ACCOUNT, token=token(sim), body={"password": _b64(NEW_PASSWORD)})
    assert response.status_code == 204
    assert not _pop3_login(sim, AM_ADDRESS, AM_PASSWORD)
    assert _pop3_login(sim, AM_ADDRESS, NEW_PASSWORD)
    # And for the Account Manager itself: the old password no longer authenticates.
    assert call(sim, "GET", ACCOUNT, token=token(sim)).status_code == 401
    assert call(sim, "GET", ACCOUNT, token=token(sim), password=NEW_PASSWORD).status_code == 200


def test_a_password_change_survives_a_restart_of_a_cm_started_with_a_config_file(
    tmp_path: Path, accountmanager_sim_factory: Callable[..., AmSim]
) -> None:
    # As `python -m tisim run --config FILE` (the demo) runs it: the CM does not own the file.
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"tls": True, "accounts": [{"address": AM_ADDRESS, "password": AM_PASSWORD}]}))
    cm = CMSimulator(tmp_path / "data", accounts={AM_ADDRESS: AM_PASSWORD}, config_path=config)
    cm.start()
    try:
        sim = accountmanager_sim_factory(cm=cm)
        assert call(sim, "PUT", ACCOUNT, token=token(sim), body={"password": _b64(NEW_PASSWORD)}).status_code == 204
    finally:
        cm.stop()
    assert CMConfig.load(config).accounts[AM_ADDRESS] == NEW_PASSWORD


def test_a_standalone_account_manager_changes_the_cm_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"accounts": [{"address": AM_ADDRESS, "password": AM_PASSWORD}]}))
    am = AccountManagerSimulator(tmp_path, accounts=ConfigAccounts(config))
    with am:
        ca = Pki(pki_directory(tmp_path)).smcb_ca
        card = issue_smcb(ca.cert, ca.key)
        response = requests.put(
            am.base_url + ACCOUNT,
            headers={
                "Authorization": f"Bearer {card.token(am.base_url)}",
                "password": _b64(AM_PASSWORD),
                "Content-Type": "application/json",
            },
            data=json.dumps({"password": _b64(NEW_PASSWORD)}),
            verify=str(am.ca_path),
            timeout=10,
        )
    assert response.status_code == 204
    assert json.loads(config.read_text())["accounts"] == [{"address": AM_ADDRESS, "password": NEW_PASSWORD}]


# --- out of office: the simulated Fachdienst answers -----------------------------------------------------------------


def _set_absent(
    sim: AmSim, *, start: dt.datetime = NOW - dt.timedelta(hours=1), message: str = "Bin im Urlaub."
) -> None:
    body = {
        "active": True,
        "startDate": start.isoformat().replace("+00:00", "Z"),
        "endDate": (NOW + dt.timedelta(days=7)).isoformat().replace("+00:00", "Z"),
        "message": message,
    }
    assert call(sim, "PUT", ACCOUNT + "/outofoffice", token=token(sim), body=body).status_code == 204


def _mail(sender: str, to: str, subject: str = "Befund", extra: str = "") -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}-{time.time_ns()}@klinikum-demo.kim.telematik>\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n"
    ).encode()


def _send(
    sim: AmSim, raw: bytes, *, sender: str = AM_OTHER, to: str = AM_ADDRESS, mail_from: str | None = None
) -> None:
    with smtp_connect(sim.cm) as conn:
        conn.login(smtp_user(sender), AM_PASSWORD)
        conn.sendmail(sender if mail_from is None else mail_from, [to], raw)


def _replies(sim: AmSim, address: str = AM_OTHER) -> list[bytes]:
    found = [sim.cm.maildrop_read(address, u) for u in sim.cm.maildrop_uidls(address)]
    return [m for m in found if get_header(m, "X-KIM-Dienstkennung") == DIENSTKENNUNG]


def test_out_of_office_answers_the_sender_once(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    _set_absent(sim, message="Bis 6. Dezember im Urlaub.\nVertretung: labor@klinikum-demo.kim.telematik")
    first = _mail(AM_OTHER, AM_ADDRESS, "Befund 1")
    _send(sim, first)
    replies = _replies(sim)
    assert len(replies) == 1
    reply = replies[0]
    assert get_header(reply, "From") == f"<{AM_ADDRESS}>"
    assert get_header(reply, "To") == f"<{AM_OTHER}>"
    assert get_header(reply, "Auto-Submitted") == "auto-replied"
    assert get_header(reply, "In-Reply-To") == get_header(first, "Message-ID")
    assert get_header(reply, "Subject") == "Abwesenheitsnotiz: Befund 1"
    assert b"Bis 6. Dezember im Urlaub.\r\nVertretung: labor@" in reply
    # The original reached the absent address all the same.
    assert len(sim.cm.maildrop_uidls(AM_ADDRESS)) == 1

    _send(sim, _mail(AM_OTHER, AM_ADDRESS, "Befund 2"))
    assert len(_replies(sim)) == 1
    assert len(sim.cm.maildrop_uidls(AM_ADDRESS)) == 2

    # A new note is a new period: the sender hears about it once more.
    _set_absent(sim, message="Jetzt bis Januar.")
    _send(sim, _mail(AM_OTHER, AM_ADDRESS, "Befund 3"))
    assert len(_replies(sim)) == 2


@pytest.mark.parametrize(
    ("extra", "mail_from"),
    [
        ("Auto-Submitted: auto-generated\r\n", None),
        ("Auto-Submitted: auto-replied\r\n", None),
        (f"X-KIM-Dienstkennung: {DIENSTKENNUNG}\r\n", None),
        ("Precedence: bulk\r\n", None),
        ("List-Id: <alle.klinikum-demo>\r\n", None),
    ],
)
def test_automatic_mail_gets_no_answer(accountmanager_sim: AmSim, extra: str, mail_from: str | None) -> None:
    sim = accountmanager_sim
    _set_absent(sim)
    _send(sim, _mail(AM_OTHER, AM_ADDRESS, extra=extra), mail_from=mail_from)
    assert len(sim.cm.maildrop_uidls(AM_ADDRESS)) == 1
    assert _replies(sim) == []


def test_a_report_with_null_reverse_path_gets_no_answer(accountmanager_sim: AmSim) -> None:
    # Clients cannot submit with MAIL FROM:<> (the CM refuses it); the Fachdienst's own DSNs have it.
    sim = accountmanager_sim
    _set_absent(sim)
    answered = answer_absences(
        _mail("mailer-daemon@fachdienst.kim.telematik", AM_ADDRESS),
        envelope_sender="",
        delivered=[AM_ADDRESS],
        store=sim.cm.context.store,
        accounts=sim.cm.accounts,
        outside=None,
    )
    assert answered == [] and _replies(sim) == []
    # The same mail with a sender is answered: the null path made the difference.
    answered = answer_absences(
        _mail(AM_OTHER, AM_ADDRESS),
        envelope_sender=AM_OTHER,
        delivered=[AM_ADDRESS],
        store=sim.cm.context.store,
        accounts=sim.cm.accounts,
        outside=None,
    )
    assert answered == [AM_ADDRESS] and len(_replies(sim)) == 1


def test_multipart_report_gets_no_answer(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    _set_absent(sim)
    raw = _mail(AM_OTHER, AM_ADDRESS).replace(
        b"Content-Type: text/plain; charset=utf-8",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    )
    _send(sim, raw)
    assert _replies(sim) == []


def test_bcc_and_outside_the_period_get_no_answer(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    _set_absent(sim, start=NOW + dt.timedelta(days=1))
    _send(sim, _mail(AM_OTHER, AM_ADDRESS))
    assert _replies(sim) == []
    _set_absent(sim)
    _send(sim, _mail(AM_OTHER, "jemand@anderswo.kim.telematik"), to=AM_ADDRESS)  # reached AM_ADDRESS by Bcc
    assert _replies(sim) == []


def test_switched_off_note_answers_nobody(accountmanager_sim: AmSim) -> None:
    sim = accountmanager_sim
    _set_absent(sim)
    assert call(sim, "PUT", ACCOUNT + "/outofoffice", token=token(sim), body={"active": False}).status_code == 204
    _send(sim, _mail(AM_OTHER, AM_ADDRESS))
    assert _replies(sim) == []
    note = call(sim, "GET", ACCOUNT + "/outofoffice", token=token(sim)).json()
    assert note["active"] is False and note["message"] == "Bin im Urlaub."


# --- python -m tisim run ----------------------------------------------------------------------------------------------


def test_run_starts_the_account_manager_next_to_the_cm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "run", "--data-dir", str(tmp_path), "--smtp-port", "0", "--pop3-port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("tisim CM: SMTP")
        line = proc.stdout.readline()
        assert line.startswith("tisim Account Manager: https://127.0.0.1:"), line
        runtime = json.loads((tmp_path / "accountmanager.json").read_text())
        assert runtime["port"] != 8444 and runtime["base_url"] in line
        info = requests.get(
            runtime["base_url"] + "/ServiceInformation/v1.0/serviceinfo", verify=runtime["ca"], timeout=10
        )
        assert info.status_code == 200 and info.json()["jwtExpiration"] == 300
        # The Konnektor (started alongside in the demo) creates the card PKI; the Account Manager only reads it later.
        assert not (tmp_path / "konnektor").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "accountmanager.json").exists()
