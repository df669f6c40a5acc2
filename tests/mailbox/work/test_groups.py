"""Roles through groups (wards): the strongest role wins, only for the mailbox the group belongs to."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from kimportal import errors
from mailbox import selectors
from mailbox.models import (
    Membership,
    Message,
)
from mailbox.services import assignment, claims
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.work.support import Role

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("direct", "via_group", "expected"),
    [
        (None, Role.READER, Role.READER),
        (None, Role.PROCESSOR, Role.PROCESSOR),
        (Role.OBSERVER, Role.PROCESSOR, Role.PROCESSOR),
        (Role.OWNER, Role.READER, Role.OWNER),
        (Role.READER, Role.OBSERVER, Role.READER),
        (Role.PROCESSOR, None, Role.PROCESSOR),
    ],
)
def test_strongest_of_direct_and_group_role_wins(direct, via_group, expected, box, message):
    user = UserFactory(username="gabi")
    if direct:
        MembershipFactory(mailbox=box, user=user, role=direct)
    if via_group:
        ward = Group.objects.create(name="Station 3")
        user.groups.add(ward)
        Membership.objects.create(mailbox=box, group=ward, role=via_group)

    assert selectors.user_role(user, box) == expected
    assert selectors.mailbox_get_for_user(user, box.pk).user_role == expected
    assert list(Message.objects.visible_to(user)) == [message]
    may_process = Membership.RANK[expected] >= Membership.RANK[Role.PROCESSOR]
    assert (user in selectors.mailbox_members(box)) is may_process
    if may_process:
        assert claims.message_claim(user=user, message=message).won
    else:
        with pytest.raises(errors.NotAllowed):
            claims.message_claim(user=user, message=message)


def test_group_of_another_mailbox_gives_nothing(box, message):
    user = UserFactory(username="gabi")
    ward = Group.objects.create(name="Station 4")
    user.groups.add(ward)
    Membership.objects.create(mailbox=MailboxFactory(), group=ward, role=Role.OWNER)
    assert selectors.user_role(user, box) is None
    assert not Message.objects.visible_to(user).exists()


def test_group_member_can_be_assigned(owner, box, message):
    user = UserFactory(username="gabi")
    ward = Group.objects.create(name="Station 3")
    user.groups.add(ward)
    Membership.objects.create(mailbox=box, group=ward, role=Role.PROCESSOR)
    assert assignment.message_assign(user=owner, message=message, version=1, assignee_id=user.pk).assignee == user
