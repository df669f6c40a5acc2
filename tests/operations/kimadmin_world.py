"""The world of the KIM administration tests: real simulators over their sockets, PostgreSQL, the portal's services.

``kim``: the simulated Konnektor with an SMC-B in the account's workplace, a simulated Clientmodul holding the
hospital's mailbox (and a foreign one and a practice), the simulated Account Manager trusting the Konnektor's SMC-B
CA and changing the CM's logins, the portal's settings pointing at all three, and people: an owner, a processor
(member without ownership), a manager (Leitung), a stranger owning the foreign mailbox.

Imported by the test modules (``from tests.operations.kimadmin_world import *``-free: they import ``kim``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from mailbox.models import KimAccount, Mailbox, Membership
from operations.services import amauth
from tests.fixtures.accountmanager_sim import AmSim
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tisim.cm import CMSimulator
from tisim.konnektor import KonnektorSimulator

ADDRESS = "aufnahme@klinikum-test.kim.telematik-test"
FOREIGN = "labor@klinikum-test.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
PASSWORD = "Alt-Passwort-2026!"
NEW_PASSWORD = "Neu-Passwort-2027!"
SMCB_HOLDER = "Klinikum Test"
SMCB_TELEMATIK_ID = "5-2-KH-Klinikum-Test-01"


@dataclass
class KimWorld:
    konnektor: KonnektorSimulator
    cm: CMSimulator
    am: AmSim
    mailbox: Mailbox
    account: KimAccount
    foreign: Mailbox
    owner: Any
    processor: Any
    manager: Any
    stranger: Any

    def client_for(self, user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    def cm_password(self, address: str = ADDRESS) -> str | None:
        return self.cm.accounts.get(address)

    def stored_password(self) -> str:
        return KimAccount.objects.get(pk=self.account.pk).get_password()


def make_account(cm: CMSimulator, address: str, **kwargs: Any) -> KimAccount:
    account: KimAccount = KimAccountFactory(
        mailbox__address=address,
        mailbox__display_name=kwargs.pop("display_name", "Aufnahme"),
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        mandant_id=MANDANT,
        client_system_id=CLIENT_SYSTEM,
        workplace_id=WORKPLACE,
        timeout_seconds=5.0,
        password=kwargs.pop("password", PASSWORD),
        **kwargs,
    )
    return account


def manager_user(username: str = "leitung") -> Any:
    user = UserFactory(username=username)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


@pytest.fixture
def kim(
    settings: Any,
    db: None,
    tmp_path: Path,
    konnektor_sim_factory: Callable[..., KonnektorSimulator],
    accountmanager_sim_factory: Callable[..., AmSim],
) -> Iterator[KimWorld]:
    konnektor = konnektor_sim_factory(hba=False, data_dir=tmp_path / "konnektor")
    konnektor.add_smcb(SMCB_HOLDER, SMCB_TELEMATIK_ID, workplaces=(WORKPLACE,))
    cm = CMSimulator(tmp_path / "cm", accounts={ADDRESS: PASSWORD, FOREIGN: PASSWORD, PRAXIS: PASSWORD}, tls=True)
    cm.start()
    try:
        am = accountmanager_sim_factory(cm=cm, pki_data_dir=konnektor.data_dir)
        settings.KIMPORTAL_KONNEKTOR_URL = konnektor.base_url
        settings.KIMPORTAL_KONNEKTOR_MODE = "plain"
        settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
        settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = CLIENT_SYSTEM
        settings.KIMPORTAL_KONNEKTOR_TIMEOUT = 10.0
        settings.KIMPORTAL_ACCOUNT_MANAGER_URL = am.base_url
        settings.KIMPORTAL_ACCOUNT_MANAGER_CA = str(am.am.ca_path)
        settings.KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT = 5.0
        settings.KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN = ""
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        amauth.clear_token_cache()
        account = make_account(cm, ADDRESS)
        foreign_account = make_account(cm, FOREIGN, display_name="Labor")
        owner = UserFactory(username="eigentuemerin")
        processor = UserFactory(username="bearbeiter")
        stranger = UserFactory(username="fremde")
        MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
        MembershipFactory(mailbox=account.mailbox, user=processor, role=Membership.Role.PROCESSOR)
        MembershipFactory(mailbox=foreign_account.mailbox, user=stranger, role=Membership.Role.OWNER)
        yield KimWorld(
            konnektor=konnektor,
            cm=cm,
            am=am,
            mailbox=account.mailbox,
            account=account,
            foreign=foreign_account.mailbox,
            owner=owner,
            processor=processor,
            manager=manager_user(),
            stranger=stranger,
        )
    finally:
        amauth.clear_token_cache()
        cm.stop()
