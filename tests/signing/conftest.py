from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from mailbox.models import Membership
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
