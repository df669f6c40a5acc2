"""The rules pages: owners and managers only (404 for everyone else), add, test without changing, edit, reorder."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import Membership, Message, RoutingRule
from mailbox.services.ingest import message_ingest
from mailbox.services.members import membership_remove
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

RULE = {
    "name": "eAU-Fehler",
    "dienstkennung": "eAU;Fehler-Kasse",
    "set_state": "waiting",
    "queue_name": "Aufnahme",
    "stop_after_match": "on",
    "is_active": "on",
}


@pytest.fixture
def box():
    box = MailboxFactory(display_name="Aufnahme Nord")
    message_ingest(
        mailbox=box, uidl="1", raw=simple_mail("Fehler Kasse Müller", X_KIM_Dienstkennung="eAU;Fehler-Kasse;V1")
    )
    message_ingest(mailbox=box, uidl="2", raw=simple_mail("Arztbrief Schulz"))
    return box


def manager():
    user = UserFactory(username="leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def member(box, role):
    user = UserFactory(username=f"m-{role}")
    MembershipFactory(mailbox=box, user=user, role=role)
    return user


@pytest.mark.parametrize("role", [None, "observer", "reader", "processor"])
def test_everyone_but_owners_and_managers_gets_404(box, role, client):
    rule = RoutingRule.objects.create(mailbox=box, position=1, name="R", subject_words="x", set_state="done")
    client.force_login(member(box, role) if role else UserFactory(username="fremd"))
    urls = [
        reverse("mailbox:mailbox-routing", args=[box.pk]),
        reverse("mailbox:mailbox-routing-edit", args=[box.pk, rule.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 404
        assert client.get(url + "?testen=1").status_code == 404
        assert client.post(url, {**RULE, "testen": "1"}).status_code == 404
    for name in ("mailbox-routing-move", "mailbox-routing-active", "mailbox-routing-delete"):
        assert client.post(reverse(f"mailbox:{name}", args=[box.pk, rule.pk])).status_code == 404
    rule.refresh_from_db()
    assert (rule.name, rule.is_active, RoutingRule.objects.count()) == ("R", True, 1)
    assert not AuditEvent.objects.filter(action="routing.rule_changed").exists()


def test_a_rule_of_another_mailbox_is_404(box, client):
    owner = member(box, Membership.Role.OWNER)
    other = RoutingRule.objects.create(
        mailbox=MailboxFactory(), position=1, name="R", subject_words="x", set_state="done"
    )
    client.force_login(owner)
    assert client.get(reverse("mailbox:mailbox-routing-edit", args=[box.pk, other.pk])).status_code == 404
    assert client.post(reverse("mailbox:mailbox-routing-delete", args=[box.pk, other.pk])).status_code == 404
    assert RoutingRule.objects.filter(pk=other.pk).exists()


def test_owner_tests_then_saves_a_rule(box, client):
    owner = member(box, Membership.Role.OWNER)
    client.force_login(owner)
    url = reverse("mailbox:mailbox-routing", args=[box.pk])
    before = list(Message.objects.values_list("pk", "state", "assignee_id", "version"))

    response = client.post(url, {**RULE, "testen": "1"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Von den letzten 2 Nachrichten träfe die Regel 1 Nachricht." in html
    assert "Fehler Kasse Müller" in html and "Arztbrief Schulz" not in html and "Ablage: Aufnahme" in html
    assert (
        not RoutingRule.objects.exists()
        and list(Message.objects.values_list("pk", "state", "assignee_id", "version")) == before
    )

    response = client.post(url, RULE)
    assert response.status_code == 302
    rule = RoutingRule.objects.get()
    assert (rule.dienstkennung, rule.set_state, rule.queue.name) == ("eAU;Fehler-Kasse", "waiting", "Aufnahme")
    assert AuditEvent.objects.get(action="routing.rule_changed").details["change"] == "created"
    assert "eAU-Fehler" in client.get(url).content.decode()

    bad = client.post(url, {"name": "leer", "set_state": "done"})
    assert bad.status_code == 422 and "mindestens eine Bedingung" in bad.content.decode()
    assert RoutingRule.objects.count() == 1


def test_manager_without_membership_manages_rules_and_sees_no_subjects(box, client):
    client.force_login(manager())
    url = reverse("mailbox:mailbox-routing", args=[box.pk])
    assert client.get(url).status_code == 200
    html = client.post(url, {**RULE, "testen": "1"}).content.decode()
    assert "träfe die Regel 1 Nachricht" in html and "Müller" not in html
    assert "Betreffe sehen nur Mitglieder" in html
    assert client.post(url, RULE).status_code == 302
    rule = RoutingRule.objects.get()
    edit = reverse("mailbox:mailbox-routing-edit", args=[box.pk, rule.pk])
    assert client.post(edit, {**RULE, "name": "Fehler der Kasse"}).status_code == 302
    assert client.post(reverse("mailbox:mailbox-routing-active", args=[box.pk, rule.pk])).status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.is_active) == ("Fehler der Kasse", False)
    changes = list(
        AuditEvent.objects.filter(action="routing.rule_changed")
        .order_by("pk")
        .values_list("details__change", flat=True)
    )
    assert changes == ["created", "updated", "deactivated"]


def test_reorder_and_delete(box, client):
    owner = member(box, Membership.Role.OWNER)
    client.force_login(owner)
    rules = [
        RoutingRule.objects.create(mailbox=box, position=i, name=f"R{i}", subject_words="x", set_state="done")
        for i in (1, 2, 3)
    ]
    client.post(reverse("mailbox:mailbox-routing-move", args=[box.pk, rules[2].pk]), {"richtung": "hoch"})
    client.post(reverse("mailbox:mailbox-routing-move", args=[box.pk, rules[2].pk]), {"richtung": "hoch"})
    client.post(reverse("mailbox:mailbox-routing-move", args=[box.pk, rules[0].pk]), {"richtung": "runter"})
    assert list(RoutingRule.objects.order_by("position").values_list("name", "position")) == [
        ("R3", 1),
        ("R2", 2),
        ("R1", 3),
    ]
    client.post(reverse("mailbox:mailbox-routing-delete", args=[box.pk, rules[1].pk]))
    assert list(RoutingRule.objects.order_by("position").values_list("name", flat=True)) == ["R3", "R1"]


def _tab(client, url) -> dict[str, str]:
    """What an open edit page would send back besides the visible fields (its hidden inputs)."""
    form = client.get(url).context["form"]
    return {field.html_name: field.value() for field in form.hidden_fields()}


def test_two_tabs_editing_one_rule_the_second_save_is_refused_and_keeps_its_input(box, client):
    owner = member(box, Membership.Role.OWNER)
    rule = RoutingRule.objects.create(mailbox=box, position=1, name="R", subject_words="x", set_state="done")
    client.force_login(owner)
    url = reverse("mailbox:mailbox-routing-edit", args=[box.pk, rule.pk])
    first, second = _tab(client, url), _tab(client, url)

    assert client.post(url, {**RULE, **first, "name": "Erste Fassung"}).status_code == 302
    response = client.post(url, {**RULE, **second, "name": "Zweite Fassung", "queue_name": "Später"})

    # The second tab saw the rule before the first saved: saving it would silently undo the first's change.
    assert response.status_code == 422
    html = response.content.decode()
    assert "inzwischen an anderer Stelle geändert" in html
    assert 'value="Zweite Fassung"' in html and 'value="Später"' in html  # the input is not lost
    rule.refresh_from_db()
    assert rule.name == "Erste Fassung"
    assert [e.details["name"] for e in AuditEvent.objects.filter(action="routing.rule_changed")] == ["Erste Fassung"]

    # Having seen the warning, saving again from that page is a deliberate overwrite.
    again = {field.html_name: field.value() for field in response.context["form"].hidden_fields()}
    assert client.post(url, {**RULE, **again, "name": "Zweite Fassung"}).status_code == 302
    rule.refresh_from_db()
    assert rule.name == "Zweite Fassung"


def test_switching_a_rule_off_meanwhile_is_not_undone_by_an_open_edit_page(box, client):
    owner = member(box, Membership.Role.OWNER)
    rule = RoutingRule.objects.create(mailbox=box, position=1, name="R", subject_words="x", set_state="done")
    client.force_login(owner)
    url = reverse("mailbox:mailbox-routing-edit", args=[box.pk, rule.pk])
    stale = _tab(client, url)

    client.post(reverse("mailbox:mailbox-routing-active", args=[box.pk, rule.pk]), {"aktiv": "0"})
    response = client.post(url, {**RULE, **stale})  # the page still shows the rule as active

    assert response.status_code == 422
    rule.refresh_from_db()
    assert rule.is_active is False


def test_saving_a_rule_deleted_in_another_tab_keeps_the_input_to_save_as_a_new_rule(box, client):
    owner = member(box, Membership.Role.OWNER)
    rule = RoutingRule.objects.create(mailbox=box, position=1, name="R", subject_words="x", set_state="done")
    client.force_login(owner)
    url = reverse("mailbox:mailbox-routing-edit", args=[box.pk, rule.pk])
    stale = _tab(client, url)
    client.post(reverse("mailbox:mailbox-routing-delete", args=[box.pk, rule.pk]))

    response = client.post(url, {**RULE, **stale, "name": "Meine Änderung"})

    assert response.status_code == 422
    html = response.content.decode()
    assert "inzwischen gelöscht" in html and 'value="Meine Änderung"' in html
    # The form now posts to "new rule": saving it again creates the rule instead of another 404.
    create = reverse("mailbox:mailbox-routing", args=[box.pk])
    assert f'action="{create}"' in html
    assert not RoutingRule.objects.exists()
    assert client.post(create, {**RULE, "name": "Meine Änderung"}).status_code == 302
    assert RoutingRule.objects.get().name == "Meine Änderung"
    # Opening the deleted rule is still a 404.
    assert client.get(url).status_code == 404
    # Another mailbox's rule id answers as a deleted one does (nothing about it is shown) and stays unchanged.
    other = RoutingRule.objects.create(mailbox=MailboxFactory(), position=1, name="Fremd", subject_words="x")
    foreign = client.post(reverse("mailbox:mailbox-routing-edit", args=[box.pk, other.pk]), {**RULE, "name": "Neu"})
    assert foreign.status_code == 422 and "Fremd" not in foreign.content.decode()
    other.refresh_from_db()
    assert other.name == "Fremd" and other.mailbox_id != box.pk


def test_a_rule_whose_person_left_the_mailbox_says_so_and_its_mail_stays_unassigned(box, client):
    owner = member(box, Membership.Role.OWNER)
    ben = UserFactory(username="ben", first_name="Ben", last_name="Berger")
    MembershipFactory(mailbox=box, user=ben, role=Membership.Role.PROCESSOR)
    RoutingRule.objects.create(
        mailbox=box, position=1, name="Befunde", subject_words="Befund", assign="user", assign_user=ben
    )
    client.force_login(owner)
    page = reverse("mailbox:mailbox-routing", args=[box.pk])
    gone = "kann das Postfach nicht mehr bearbeiten"
    assert "an Ben Berger" in client.get(page).content.decode()
    assert gone not in client.get(page).content.decode()

    membership_remove(user=owner, mailbox=box, membership_id=Membership.objects.get(mailbox=box, user=ben).pk)

    assert gone in client.get(page).content.decode()
    message = message_ingest(mailbox=box, uidl="3", raw=simple_mail("Befund Meier"))
    assert Message.objects.get(pk=message.pk).assignee is None
    note = AuditEvent.objects.get(action="routing.applied", message_id=message.pk).details["note"]
    # Kept untranslated in the trail: the msgid, read in any language.
    assert note == {"msgid": "Die Person der Regel kann das Postfach nicht bearbeiten: unzugewiesen.", "params": {}}
