"""Roles read once per HTTP request, never kept beyond it, and re-read after a write that changes them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kimportal.requestscope import request_scope
from mailbox.models import Mailbox, Membership, Message
from mailbox.permissions import user_role
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    user = UserFactory(username="station")
    box = MailboxFactory()
    membership = MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF)
    return user, box, membership


def _role_queries(queries) -> int:
    return sum('FROM "mailbox_membership"' in q["sql"] for q in queries)


def test_within_a_request_the_roles_are_read_once(setup):
    user, box, _ = setup
    with request_scope(), CaptureQueriesContext(connection) as queries:
        assert user_role(user, box.pk) == Membership.Role.PROCESSOR
        assert list(Mailbox.objects.visible_to(user)) == [box]
        assert Message.objects.visible_to(user).count() == 1
        assert user_role(user, box) == Membership.Role.PROCESSOR
    assert _role_queries(queries.captured_queries) == 1


def test_outside_a_request_every_question_reads_again(setup):
    # Sockets run outside any scope: a member removed while a socket stays open loses access at once.
    user, box, membership = setup
    assert Message.objects.visible_to(user).count() == 1
    membership.delete()
    assert Message.objects.visible_to(user).count() == 0
    assert user_role(user, box) is None


@pytest.mark.parametrize("change", ["remove", "downgrade", "deactivate user", "deactivate mailbox", "group"])
def test_a_write_in_the_same_request_is_seen(setup, change):
    user, box, membership = setup
    ward = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, user=None, group=ward, role=Membership.Role.OWNER)
    with request_scope():
        assert user_role(user, box) == Membership.Role.PROCESSOR
        if change == "remove":
            membership.delete()
        elif change == "downgrade":
            membership.role = Membership.Role.READER
            membership.save()
        elif change == "deactivate user":
            user.is_active = False
            user.save()
        elif change == "deactivate mailbox":
            box.is_active = False
            box.save()
        else:
            user.groups.add(ward)  # joining a ward that owns the mailbox counts at once
        expected = {"downgrade": Membership.Role.READER, "group": Membership.Role.OWNER}.get(change)
        assert user_role(user, box) == expected
        assert Message.objects.visible_to(user).exists() == (expected is not None)


def test_scopes_do_not_leak_into_each_other(setup):
    user, box, membership = setup
    with request_scope():
        assert user_role(user, box) == Membership.Role.PROCESSOR
    Membership.objects.filter(pk=membership.pk).delete()  # a queryset delete: no signal, no scope open
    with request_scope():
        assert user_role(user, box) is None
