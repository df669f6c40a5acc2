"""The simulated Account Manager publishes what it registers in the simulated VZD (a real slapd, over LDAP).

Registration adds the address to the entry of the institution whose SMC-B signed (``mail``, ``komLeData``
``<version>,<mail>``, ``kimData`` ``<mail>,<version>``); deregistration takes it out at once, a revocation puts it
back; a VZD that does not answer is 502 and nothing is registered, the registration code stays usable. The portal's
own directory search (directory.selectors, anonymous LDAP) sees the result.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import ldap3
import pytest

from directory import certcache
from directory.selectors import directory_entry_for_address
from operations.clients.accountmanager import AccountManagerError
from tests.fixtures.accountmanager_sim import AM_ADDRESS, AM_PASSWORD, SMCB_TELEMATIK_ID, AmSim
from tests.tisim.support import REPO
from tisim.accountmanager.vzdlink import VzdLink
from tisim.vzd.generate import BASE_DN, KLINIKUM_DEMO_TELEMATIK_ID, generate_file
from tisim.vzd.slapd import ROOT_DN, ROOT_PW, SlapdServer, free_port

pytestmark = pytest.mark.slapd

NEW = "neu@klinikum-demo.kim.telematik"
NEW_PASSWORD = "Neues-Passwort-2027?"
EXISTING = "pforte@klinikum-demo.kim.telematik"  # already in the institution's entry before the tests
OTHER_TID = "1-2-Praxis-Anderswo-01"
OTHER_ADDRESS = "anderswo@praxis.kim.telematik"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("am-vzd")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 30, seed=7)
    server = SlapdServer(data_dir / "slapd", ldif).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin(server: SlapdServer) -> ldap3.Connection:
    return ldap3.Connection(ldap3.Server(server.url), user=ROOT_DN, password=ROOT_PW, auto_bind=True)


def _add_entry(conn: ldap3.Connection, telematik_id: str, name: str, mails: list[str]) -> str:
    uid = str(uuid.uuid4())
    dn = f"uid={uid},{BASE_DN}"
    attrs: dict[str, object] = {
        "uid": uid,
        "telematikID": telematik_id,
        "displayName": name,
        "cn": name,
        "l": "Berlin",
        "changeDateTime": "2026-11-01T10:00:00.000000+01:00",
    }
    if mails:
        attrs |= {"mail": mails, "komLeData": [f"1.5,{m}" for m in mails], "kimData": [f"{m},1.5" for m in mails]}
    assert conn.add(dn, ["top", "vzd-komleview"], attrs), conn.result
    return dn


@pytest.fixture
def vzd(slapd: SlapdServer) -> Iterator[SlapdServer]:
    """The running slapd with the institution's entry (holding EXISTING) and another practice's entry; both are
    removed afterwards, and a test that stopped slapd gets it started again."""
    if not slapd.running:
        slapd.start()
    conn = _admin(slapd)
    added = [
        _add_entry(conn, SMCB_TELEMATIK_ID, "Klinikum Demo (Test)", [EXISTING]),
        _add_entry(conn, OTHER_TID, "Praxis Anderswo", [OTHER_ADDRESS]),
    ]
    conn.unbind()
    yield slapd
    if not slapd.running:
        slapd.start()
    conn = _admin(slapd)
    for dn in added:
        conn.delete(dn)
    conn.unbind()


def _holders(server: SlapdServer, address: str) -> list[dict[str, list[str]]]:
    """Who holds ``address`` in the directory, as an anonymous client (the portal, a sender's CM) sees it."""
    conn = ldap3.Connection(ldap3.Server(server.url), auto_bind=True)
    conn.search(
        BASE_DN,
        f"(mail={ldap3.utils.conv.escape_filter_chars(address)})",
        attributes=["telematikID", "mail", "komLeData", "kimData", "changeDateTime"],
    )
    found = [
        {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in e["attributes"].items()}
        for e in conn.response
    ]
    conn.unbind()
    return found


@pytest.fixture
def am(accountmanager_sim_factory: Callable[..., AmSim], vzd: SlapdServer) -> AmSim:
    return accountmanager_sim_factory(vzd=VzdLink(url=vzd.url, timeout=2.0))


def _register(sim: AmSim, reference_id: str, initial_password: str, **kwargs: object) -> None:
    sim.client(username=NEW, password=NEW_PASSWORD).register(
        reference_id=reference_id, initial_password=initial_password, **kwargs
    )


def test_registration_publishes_the_address_in_the_institutions_entry(am: AmSim, vzd: SlapdServer, settings) -> None:
    code = am.am.issue_registration_code(NEW)
    _register(am, code.reference_id, code.initial_password)

    [entry] = _holders(vzd, NEW)
    assert entry["telematikID"] == [SMCB_TELEMATIK_ID]
    assert sorted(entry["mail"]) == sorted([EXISTING, NEW])
    assert f"1.5,{NEW}" in entry["komLeData"] and f"{NEW},1.5" in entry["kimData"]
    assert f"1.5,{EXISTING}" in entry["komLeData"]  # the institution's other addresses stay as they were
    assert entry["changeDateTime"] != ["2026-11-01T10:00:00.000000+01:00"]
    # The portal's directory search (anonymous, as through the Konnektor) finds the new address there.
    certcache.clear()
    settings.KIMPORTAL_VZD_URL = vzd.url
    settings.KIMPORTAL_VZD_CA_FILE = ""
    found = directory_entry_for_address(NEW)
    assert found is not None and found.telematik_id == SMCB_TELEMATIK_ID
    assert {a.address: a.version for a in found.addresses}[NEW] == "1.5"


def test_deregistration_takes_the_address_out_and_a_revocation_puts_it_back(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(NEW)
    _register(am, code.reference_id, code.initial_password)
    client = am.client(username=NEW, password=NEW_PASSWORD)

    client.deregister()
    assert _holders(vzd, NEW) == []
    [entry] = _holders(vzd, EXISTING)
    assert entry["mail"] == [EXISTING] and not any(NEW in v for v in entry["komLeData"] + entry["kimData"])
    assert client.account().registration_status == "deregistered"  # POP3 stays until deregDate
    assert NEW not in (am.am.directory_entry(SMCB_TELEMATIK_ID) or {}).get("mail", [])

    client.revoke_deregistration()
    [entry] = _holders(vzd, NEW)
    assert entry["telematikID"] == [SMCB_TELEMATIK_ID] and f"{NEW},1.5" in entry["kimData"]


def test_vzd_down_registration_is_502_nothing_registered_and_the_code_still_works(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(NEW)
    vzd.stop()
    with pytest.raises(AccountManagerError) as refused:
        _register(am, code.reference_id, code.initial_password)
    assert refused.value.status == 502 and refused.value.retryable
    assert NEW not in am.cm.accounts
    assert am.am.account_record(NEW) is None
    assert NEW not in (am.am.directory_entry(SMCB_TELEMATIK_ID) or {}).get("mail", [])

    vzd.start()
    _register(am, code.reference_id, code.initial_password)
    assert am.cm.accounts[NEW] == NEW_PASSWORD
    assert [e["telematikID"] for e in _holders(vzd, NEW)] == [[SMCB_TELEMATIK_ID]]


def test_vzd_down_deregistration_is_502_and_the_account_stays(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(NEW)
    _register(am, code.reference_id, code.initial_password)
    client = am.client(username=NEW, password=NEW_PASSWORD)
    vzd.stop()
    with pytest.raises(AccountManagerError) as refused:
        client.deregister()
    assert refused.value.status == 502
    assert client.account().registered
    vzd.start()
    assert len(_holders(vzd, NEW)) == 1


def test_no_entry_for_the_cards_telematik_id_is_502(am: AmSim, vzd: SlapdServer) -> None:
    """The provider adds KIM data to the card issuer's entry; it never creates one."""
    stranger = am.issue_card(telematik_id="5-2-Ohne-Eintrag-01")
    code = am.am.issue_registration_code(NEW)
    with pytest.raises(AccountManagerError) as refused:
        am.client(username=NEW, password=NEW_PASSWORD, card=stranger).register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
    assert refused.value.status == 502
    assert NEW not in am.cm.accounts and _holders(vzd, NEW) == []
    _register(am, code.reference_id, code.initial_password)  # the code was not used up
    assert len(_holders(vzd, NEW)) == 1


def test_a_telematik_id_with_filter_characters_finds_its_own_entry(am: AmSim, vzd: SlapdServer) -> None:
    """Parentheses are legal in a certificate's registration number; the filter escapes them (RFC 4515)."""
    telematik_id = "5-2-Klinik(Nord)-01"
    conn = _admin(vzd)
    dn = _add_entry(conn, telematik_id, "Klinik Nord", [])
    try:
        card = am.issue_card(telematik_id=telematik_id)
        code = am.am.issue_registration_code(NEW)
        am.client(username=NEW, password=NEW_PASSWORD, card=card).register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
        [entry] = _holders(vzd, NEW)
        assert entry["telematikID"] == [telematik_id]
    finally:
        conn.delete(dn)
        conn.unbind()


def test_a_directory_that_never_answers_is_502_within_the_timeout(
    accountmanager_sim_factory: Callable[..., AmSim],
) -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does), reads nothing, answers nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
        sim = accountmanager_sim_factory(vzd=VzdLink(url=url, timeout=1.0))
        code = sim.am.issue_registration_code(NEW)
        started = time.monotonic()
        with pytest.raises(AccountManagerError) as refused:
            _register(sim, code.reference_id, code.initial_password)
        assert refused.value.status == 502
        assert time.monotonic() - started < 8
    assert NEW not in sim.cm.accounts


def test_an_address_published_for_another_institution_is_409(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(OTHER_ADDRESS)
    with pytest.raises(AccountManagerError) as refused:
        am.client(username=OTHER_ADDRESS, password=NEW_PASSWORD).register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
    assert refused.value.status == 409
    assert OTHER_ADDRESS not in am.cm.accounts
    assert [e["telematikID"] for e in _holders(vzd, OTHER_ADDRESS)] == [[OTHER_TID]]


def test_kim_version_and_no_vzd_mail_entry_change_the_published_data(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(NEW)
    _register(am, code.reference_id, code.initial_password)
    client = am.client(username=NEW, password=NEW_PASSWORD)

    client.set_kim_version("1.5+")
    [entry] = _holders(vzd, NEW)
    assert [v for v in entry["komLeData"] if NEW in v] == [f"1.5+,{NEW}"]
    assert [v for v in entry["kimData"] if NEW in v] == [f"{NEW},1.5+"]

    client._account_request("set_account", "PUT", json_body={"noVzdMailEntry": True})
    assert _holders(vzd, NEW) == []
    client._account_request("set_account", "PUT", json_body={"noVzdMailEntry": False})
    assert len(_holders(vzd, NEW)) == 1


def test_registration_with_no_vzd_mail_entry_publishes_nothing(am: AmSim, vzd: SlapdServer) -> None:
    code = am.am.issue_registration_code(NEW)
    _register(am, code.reference_id, code.initial_password, no_vzd_mail_entry=True)
    assert am.cm.accounts[NEW] == NEW_PASSWORD
    assert _holders(vzd, NEW) == []


def test_an_existing_cm_account_is_published_on_its_first_version_change(am: AmSim, vzd: SlapdServer) -> None:
    """The demo's accounts exist in the CM before the Account Manager knows them: they belong to the first card
    that uses them, and a change that touches the directory publishes them in that card's entry."""
    am.client(username=AM_ADDRESS, password=AM_PASSWORD).set_kim_version("1.5+")
    [entry] = _holders(vzd, AM_ADDRESS)
    assert entry["telematikID"] == [SMCB_TELEMATIK_ID] and f"1.5+,{AM_ADDRESS}" in entry["komLeData"]


# --- finding the directory: <data_dir>/vzd.json ------------------------------------------------------------------


def test_without_a_vzd_json_the_directory_lives_in_the_state_file_only(
    accountmanager_sim_factory: Callable[..., AmSim], vzd: SlapdServer
) -> None:
    sim = accountmanager_sim_factory()
    code = sim.am.issue_registration_code(NEW)
    _register(sim, code.reference_id, code.initial_password)
    assert NEW in (sim.am.directory_entry(SMCB_TELEMATIK_ID) or {})["mail"]
    assert _holders(vzd, NEW) == []

    # vzd.json appears (vzd-serve --announce): from now on the Account Manager writes there; a dead one is 502.
    second = "zweite@klinikum-demo.kim.telematik"
    (sim.am.data_dir / "vzd.json").write_text(json.dumps({"url": f"ldap://127.0.0.1:{free_port()}"}))
    code = sim.am.issue_registration_code(second)
    client = sim.client(username=second, password=NEW_PASSWORD)
    with pytest.raises(AccountManagerError) as refused:
        client.register(reference_id=code.reference_id, initial_password=code.initial_password)
    assert refused.value.status == 502
    (sim.am.data_dir / "vzd.json").write_text(json.dumps({"url": vzd.url, "base": BASE_DN}))
    client.register(reference_id=code.reference_id, initial_password=code.initial_password)
    assert [e["telematikID"] for e in _holders(vzd, second)] == [[SMCB_TELEMATIK_ID]]


def test_vzd_serve_announces_itself_to_the_account_manager_of_the_demo(
    accountmanager_sim_factory: Callable[..., AmSim], tmp_path: Path
) -> None:
    """As scripts/demo.sh starts them: vzd-serve --announce <tisim data dir>/vzd.json, and the demo's SMC-B
    carries the Telematik-ID of the generated "Klinikum Demo" entry."""
    sim = accountmanager_sim_factory()
    announced = sim.am.data_dir / "vzd.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "vzd-serve", "--data-dir", str(tmp_path / "vzd"), "--entries", "20",
         "--announce", str(announced)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not announced.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "vzd-serve did not announce itself"
            time.sleep(0.1)
        info = json.loads(announced.read_text())
        assert info == json.loads((tmp_path / "vzd" / "vzd.json").read_text())
        card = sim.issue_card(telematik_id=KLINIKUM_DEMO_TELEMATIK_ID)
        code = sim.am.issue_registration_code(NEW)
        sim.client(username=NEW, password=NEW_PASSWORD, card=card).register(
            reference_id=code.reference_id, initial_password=code.initial_password
        )
        conn = ldap3.Connection(ldap3.Server(info["url"]), auto_bind=True)
        conn.search(BASE_DN, f"(mail={NEW})", attributes=["displayName", "telematikID", "mail"])
        [entry] = conn.response
        conn.unbind()
        assert entry["attributes"]["displayName"] == "Klinikum Demo"
        assert NEW in entry["attributes"]["mail"]
        assert "kardiologie@klinikum-demo.kim.telematik-test" in entry["attributes"]["mail"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
