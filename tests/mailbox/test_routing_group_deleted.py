"""A group a routing rule hands mail to cannot be deleted: with the link cleared, the rule quietly handed the
mailbox's mail to every present member instead of the group's."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db.models import ProtectedError
from django.urls import reverse

from mailbox.models import RoutingRule
from tests.mailbox.factories import MailboxFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule() -> RoutingRule:
    group = Group.objects.create(name="Sekretariat Kardiologie")
    return RoutingRule.objects.create(
        mailbox=MailboxFactory(),
        position=1,
        name="Arztbriefe reihum",
        dienstkennung="Arztbrief;VHitG-Versand;V1.2",
        assign=RoutingRule.Assign.ROUND_ROBIN,
        assign_group=group,
    )


def test_deleting_the_group_from_code_is_refused_and_the_rule_keeps_it(rule):
    with pytest.raises(ProtectedError):
        rule.assign_group.delete()
    rule.refresh_from_db()
    assert rule.assign_group is not None and rule.assign_group.name == "Sekretariat Kardiologie"


def test_the_admin_names_the_rule_instead_of_deleting_the_group(client, rule):
    client.force_login(UserFactory(username="it", is_staff=True, is_superuser=True))
    url = reverse("admin:auth_group_delete", args=[rule.assign_group_id])
    page = client.get(url)
    assert page.status_code == 200 and "Arztbriefe reihum" in page.content.decode()
    client.post(url, {"post": "yes"})
    assert Group.objects.filter(pk=rule.assign_group_id).exists()
    bulk = client.post(
        reverse("admin:auth_group_changelist"),
        {"action": "delete_selected", "_selected_action": [rule.assign_group_id], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert Group.objects.filter(pk=rule.assign_group_id).exists()
