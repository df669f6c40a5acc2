from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from mailbox.models import Membership
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, MANDANT, WORKPLACE
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _signed_letters_stay(settings) -> None:
    # These tests are the signing worker; the hand-over of signed letters to the outbox (a task of its own) is
    # tested with the simulated CM and directory in tests/mailbox/send/test_signed_letters.py.
    settings.KIMPORTAL_SIGNING_AUTO_SEND = False


@pytest.fixture
def mailbox():
    return MailboxFactory(display_name="Innere Medizin", address="innere@klinikum-test.kim.telematik-test")


@pytest.fixture
def physician(mailbox):
    """Dr. Anna Sommer: has an eHBA, is a member of the sending mailbox."""
    user = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    MembershipFactory(mailbox=mailbox, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=user, telematik_id="1-HBA-Sommer-0001")
    return user


@pytest.fixture
def signer(physician):
    """The physician, holding the simulated Konnektor's eHBA (tests.fixtures.konnektor_sim)."""
    physician.signer_card.telematik_id = HBA_TELEMATIK_ID
    physician.signer_card.save()
    return physician


@pytest.fixture
def sim_workplace():
    """The workplace the simulated Konnektor knows, with its card terminal."""
    return WorkplaceFactory(workplace_id=WORKPLACE, ct_id=CT_ID)


@pytest.fixture
def assistant(mailbox):
    """Prepares letters, has no eHBA."""
    user = UserFactory(username="assistenz", first_name="Paula", last_name="Praxis")
    MembershipFactory(mailbox=mailbox, user=user, role=Membership.Role.PROCESSOR)
    return user


@pytest.fixture
def stranger():
    return UserFactory(username="fremd", first_name="Fritz", last_name="Fremd")


@pytest.fixture
def manager():
    user = UserFactory(username="leitung", first_name="Lea", last_name="Leitung")
    user.user_permissions.add(Permission.objects.get(codename="manage_house"))
    return user


@pytest.fixture
def workplace():
    return WorkplaceFactory()


@pytest.fixture
def use_sim(settings, tmp_path):
    """Point the portal's Konnektor settings at a simulator: its QES CA as the trust, and in mode "basic" its
    server CA and login; keywords override settings."""

    def configure(sim, **overrides):
        ca = tmp_path / "qes-ca.pem"
        ca.write_bytes(sim.qes_ca_pem)
        settings.KIMPORTAL_KONNEKTOR_URL = sim.base_url
        settings.KIMPORTAL_KONNEKTOR_MODE = sim.mode
        settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
        settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = sim.client_system_id
        settings.KIMPORTAL_KONNEKTOR_QES_CA = str(ca)
        settings.KIMPORTAL_KONNEKTOR_TIMEOUT = 10.0
        settings.KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT = 60.0
        if sim.mode == "basic":
            server_ca = tmp_path / "konnektor-ca.pem"
            server_ca.write_bytes(sim.server_ca_pem)
            settings.KIMPORTAL_KONNEKTOR_CA = str(server_ca)
            settings.KIMPORTAL_KONNEKTOR_USER = sim.basic_user
            settings.KIMPORTAL_KONNEKTOR_PASSWORD = sim.basic_password
        for name, value in overrides.items():
            setattr(settings, name, value)
        return sim

    return configure
