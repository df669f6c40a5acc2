"""Fixtures for the work services: a mailbox with an owner, processors, a reader, an observer and a message.

Each test sets lease times directly instead of sleeping: a lease must end to the second, not on a cron tick.
"""

from __future__ import annotations

import pytest

from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.work.support import Role, add_member


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # The factory hashes every user's password; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def box():
    return MailboxFactory(display_name="Kardiologie")


@pytest.fixture
def owner(box):
    return add_member(box, "olga", Role.OWNER, "Olga", "Ober")


@pytest.fixture
def alice(box):
    return add_member(box, "anna", Role.PROCESSOR, "Anna", "Alt")


@pytest.fixture
def bob(box):
    return add_member(box, "bernd", Role.PROCESSOR, "Bernd", "Bauer")


@pytest.fixture
def carol(box):
    return add_member(box, "carla", Role.PROCESSOR, "Carla", "Christ")


@pytest.fixture
def reader(box):
    return add_member(box, "rita", Role.READER, "Rita", "Roth")


@pytest.fixture
def observer(box):
    return add_member(box, "otto", Role.OBSERVER, "Otto", "Ohm")


@pytest.fixture
def outsider():
    user = UserFactory(username="fremd", first_name="Fritz", last_name="Fremd")
    MembershipFactory(user=user, role=Role.OWNER)  # owner elsewhere: no power here
    return user


@pytest.fixture
def message(box):
    return message_ingest(mailbox=box, uidl="m1", raw=MAIL_WITH_PDF)
