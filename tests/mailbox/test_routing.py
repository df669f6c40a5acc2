"""Routing rules: matching, the actions, absences, turns, stop-after-match, Telematik-ID, preview and the audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEvent
from directory.models import Contact
from kimportal.texts import render
from mailbox.models import (
    Absence,
    AssignmentPeriod,
    MailboxQueue,
    Membership,
    Message,
    Notification,
    QueuedMessage,
    RoutingRule,
)
from mailbox.selectors.routing import dienstkennung_matches, next_in_turn, rule_preview, sender_domain_matches
from mailbox.services.ingest import message_ingest, message_stage, messages_store
from mailbox.services.members import membership_remove
from mailbox.services.routing import RuleData, routing_rule_create
from mailbox.storage import BlobBatch
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

EAU_ERROR = "eAU;Fehler-Kasse;V1.2"


def rule(box, **fields) -> RoutingRule:
    fields.setdefault("name", "Regel")
    fields.setdefault("position", RoutingRule.objects.filter(mailbox=box).count() + 1)
    return RoutingRule.objects.create(mailbox=box, **fields)


def mail(uidl: str, box, subject: str = "Befund", **headers: str) -> Message:
    return message_ingest(mailbox=box, uidl=uidl, raw=simple_mail(subject, **headers))


@pytest.fixture
def box():
    return MailboxFactory(display_name="Kardiologie")


@pytest.fixture
def team(box):
    people = [UserFactory(username=name, first_name=name.title(), last_name="Test") for name in ("anna", "ben", "cem")]
    for person in people:
        MembershipFactory(mailbox=box, user=person, role=Membership.Role.PROCESSOR)
    return people


# --- matching ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("eAU", EAU_ERROR, True),
        ("eAU;Fehler-Kasse", EAU_ERROR, True),
        ("eau ; fehler-kasse", EAU_ERROR, True),
        ("eAU;Fehler-Kasse;V1.2", EAU_ERROR, True),
        ("eAU;Fehler", EAU_ERROR, False),
        ("eAU;Fehler*", EAU_ERROR, True),
        ("eA", EAU_ERROR, False),
        ("eAU;Fehler-Kasse;V1.2;x", EAU_ERROR, False),
        ("Arztbrief", EAU_ERROR, False),
        ("eAU", "", False),
        ("", EAU_ERROR, False),
    ],
)
def test_dienstkennung_matches_by_parts(pattern, value, expected):
    assert dienstkennung_matches(pattern, value) is expected


@pytest.mark.parametrize(
    ("domain", "address", "expected"),
    [
        ("praxis-test.kim.telematik-test", "a@praxis-test.kim.telematik-test", True),
        ("@kim.telematik-test", "a@praxis-test.kim.telematik-test", True),
        ("test.kim.telematik-test", "a@praxis-test.kim.telematik-test", False),
        ("praxis-test.kim.telematik-test", "praxis-test.kim.telematik-test", False),
    ],
)
def test_sender_domain_matches_the_domain_and_below(domain, address, expected):
    assert sender_domain_matches(domain, address) is expected


def test_next_in_turn_wraps_and_breaks_ties_by_turn():
    assert next_in_turn([3, 1, 2], None) == 1
    assert next_in_turn([3, 1, 2], 1) == 2
    assert next_in_turn([3, 1, 2], 3) == 1
    assert next_in_turn([1, 3], 2) == 3  # the last one left the pool: the turn goes on after them
    assert next_in_turn([], 1) is None
    assert next_in_turn([1, 2, 3], 1, {1: 0, 2: 5, 3: 0}) == 3
    assert next_in_turn([1, 2, 3], 3, {1: 0, 2: 5, 3: 0}) == 1


# --- actions -----------------------------------------------------------------------------------------------------


def test_eau_errors_go_to_aufnahme_assigned_and_audited(box, team):
    anna = team[0]
    aufnahme = MailboxQueue.objects.create(mailbox=box, name="Aufnahme")
    r = rule(
        box,
        name="eAU-Fehler",
        dienstkennung="eAU;Fehler-Kasse",
        assign=RoutingRule.Assign.USER,
        assign_user=anna,
        set_state=Message.State.WAITING,
        queue=aufnahme,
    )
    routed = mail("1", box, "Fehler", X_KIM_Dienstkennung=EAU_ERROR)
    other = mail("2", box, "Arztbrief", X_KIM_Dienstkennung="Arztbrief;Eingangsbestaetigung;V1.0")

    routed.refresh_from_db()
    assert (routed.assignee, routed.state, routed.version) == (anna, Message.State.WAITING, 1)
    assert QueuedMessage.objects.get(message=routed).queue == aufnahme
    period = AssignmentPeriod.objects.get(message=routed)
    assert (period.user, period.assigned_by, period.ended_at) == (anna, None, None)
    assert "eAU-Fehler" in period.note_text
    event = AuditEvent.objects.get(action="routing.applied")
    assert (event.actor, event.message_id, event.mailbox_id) == (None, routed.pk, box.pk)
    assert event.details["rule"] == r.pk and event.details["rule_name"] == "eAU-Fehler"
    assert event.details["assignee"] == anna.pk and event.details["queue"] == "Aufnahme"
    notification = Notification.objects.get(user=anna)
    assert notification.message == routed and "eAU-Fehler" in notification.display_text

    other.refresh_from_db()
    assert (other.assignee, other.state) == (None, Message.State.NEW)
    assert not QueuedMessage.objects.filter(message=other).exists()


def test_conditions_combine_and_sender_and_subject_words_match(box, team):
    rule(
        box,
        sender_address="praxis@praxis-test.kim.telematik-test",
        subject_words="dringend befund",
        set_state=Message.State.IN_PROGRESS,
    )
    both = mail("1", box, "DRINGEND: Befund Müller")
    one_word = mail("2", box, "Befund Müller")
    assert Message.objects.get(pk=both.pk).state == Message.State.IN_PROGRESS
    assert Message.objects.get(pk=one_word.pk).state == Message.State.NEW


def test_round_robin_skips_the_absent_and_least_open_counts_open_work(box, team):
    anna, ben, cem = team
    now = timezone.now()
    Absence.objects.create(
        user=ben, substitute=cem, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=1)
    )
    rule(box, sender_domain="praxis-test.kim.telematik-test", assign=RoutingRule.Assign.ROUND_ROBIN)
    got = [Message.objects.get(pk=mail(str(i), box).pk).assignee for i in range(4)]
    assert got == [anna, cem, anna, cem]
    assert RoutingRule.objects.get().last_assignee == cem

    RoutingRule.objects.all().delete()
    # Anna has two open messages, Cem one (his other one is done and does not count); Ben is away.
    Message.objects.filter(assignee=cem).update(state=Message.State.DONE)
    Message.objects.filter(pk=Message.objects.filter(assignee=cem).first().pk).update(state=Message.State.NEW)
    rule(box, sender_domain="praxis-test.kim.telematik-test", assign=RoutingRule.Assign.LEAST_OPEN)
    got = [Message.objects.get(pk=mail(f"l{i}", box).pk).assignee for i in range(3)]
    assert got == [cem, anna, cem]


def test_group_pool_and_nobody_present(box, team):
    anna, ben, cem = team
    ward = Group.objects.create(name="Station 3")
    ben.groups.add(ward)
    cem.groups.add(ward)
    outsider = UserFactory(username="dora")
    outsider.groups.add(ward)  # in the ward but not a member of the mailbox
    rule(box, subject_words="Labor", assign=RoutingRule.Assign.ROUND_ROBIN, assign_group=ward)
    assert [Message.objects.get(pk=mail(str(i), box, "Labor").pk).assignee for i in range(3)] == [ben, cem, ben]

    now = timezone.now()
    for person in (ben, cem):
        Absence.objects.create(user=person, substitute=anna, starts_at=now, ends_at=now + timedelta(days=1))
    lonely = mail("x", box, "Labor")
    assert Message.objects.get(pk=lonely.pk).assignee is None
    assert not AssignmentPeriod.objects.filter(message=lonely).exists()
    note = AuditEvent.objects.get(action="routing.applied", message_id=lonely.pk).details["note"]
    assert note == {"msgid": "Niemand anwesend: die Nachricht bleibt unzugewiesen.", "params": {}}


def test_a_named_person_away_is_replaced_by_their_substitute(box, team):
    anna, ben, _cem = team
    now = timezone.now()
    Absence.objects.create(
        user=anna, substitute=ben, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=5)
    )
    rule(box, subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=anna)
    message = Message.objects.get(pk=mail("1", box).pk)
    assert message.assignee == ben
    assert "Vertretung für Anna Test" in AssignmentPeriod.objects.get(message=message).note_text


def test_the_rule_and_the_substitute_read_in_the_reader_language(box, team, client):
    """Routed while the worker had English active: the history and the notification follow the reader, not it."""
    anna, ben, _cem = team
    now = timezone.now()
    Absence.objects.create(
        user=anna, substitute=ben, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=5)
    )
    rule(box, name="Befunde", subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=anna)
    with translation.override("en"):
        message = mail("1", box)
    period = AssignmentPeriod.objects.get(message=message)
    notification = Notification.objects.get(user=ben)

    with translation.override("de"):
        assert period.note_text == "Verteilregel „Befunde“ Vertretung für Anna Test (abwesend)"
        assert notification.display_text.startswith("Verteilregel „Befunde“ hat Ihnen „Befund“ zugewiesen.")
    with translation.override("en"):
        assert period.note_text == "Routing rule “Befunde” Substitute for Anna Test (absent)"
        assert notification.display_text == (
            "Routing rule “Befunde” assigned “Befund” to you. – Substitute for Anna Test (absent)"
        )
    client.force_login(ben)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert "Substitute for Anna Test (absent)" in page and "Vertretung" not in page


def test_a_named_person_away_whose_substitute_left_the_mailbox_gets_nothing_the_queue_does(box, team):
    anna, ben, _cem = team
    now = timezone.now()
    Absence.objects.create(
        user=anna, substitute=ben, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=5)
    )
    owner = UserFactory()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    membership_remove(user=owner, mailbox=box, membership_id=Membership.objects.get(mailbox=box, user=ben).pk)
    created = rule(box, subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=anna)

    message = Message.objects.get(pk=mail("1", box).pk)

    # Anna is away and Ben can no longer see the mailbox: in the unassigned queue everyone who works it sees it.
    assert message.assignee is None and not AssignmentPeriod.objects.filter(message=message).exists()
    assert not Notification.objects.filter(message=message).exists()
    applied = AuditEvent.objects.get(action="routing.applied", message_id=message.pk)
    assert applied.details["assignee"] is None
    assert "Anna Test ist abwesend und die Vertretung kann das Postfach nicht bearbeiten" in render(
        applied.details["note"]
    )
    [row] = rule_preview(owner, box, created).rows
    assert row.assignee == "" and "abwesend" in row.note


def test_a_named_person_away_whose_substitute_is_away_too_gets_nothing_the_queue_does(box, team):
    """An absence always names a substitute; when that substitute is away as well, the mail would wait unseen with
    them. A pool rule skips the absent; a named person's rule leaves the mail unassigned, with a note, likewise."""
    anna, ben, cem = team
    now = timezone.now()
    Absence.objects.create(
        user=anna, substitute=ben, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=5)
    )
    Absence.objects.create(
        user=ben, substitute=cem, starts_at=now - timedelta(hours=2), ends_at=now + timedelta(days=1)
    )
    owner = UserFactory()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    created = rule(box, subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=anna)

    message = Message.objects.get(pk=mail("1", box).pk)

    assert message.assignee is None and not AssignmentPeriod.objects.filter(message=message).exists()
    assert not Notification.objects.filter(message=message).exists()
    applied = AuditEvent.objects.get(action="routing.applied", message_id=message.pk)
    assert applied.details["assignee"] is None
    assert applied.details["note"] == {
        "msgid": "%(name)s und die Vertretung sind abwesend: unzugewiesen.",
        "params": {"name": "Anna Test"},
    }
    [row] = rule_preview(owner, box, created).rows
    assert row.assignee == "" and "abwesend" in row.note


def test_order_stop_after_match_and_first_setter_wins(box, team):
    anna, ben, _cem = team
    rule(box, name="aus", subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=ben, is_active=False)
    rule(
        box,
        name="erste",
        subject_words="Befund",
        assign=RoutingRule.Assign.USER,
        assign_user=anna,
        stop_after_match=False,
    )
    queue = MailboxQueue.objects.create(mailbox=box, name="Befunde")
    rule(box, name="zweite", subject_words="Befund", assign=RoutingRule.Assign.USER, assign_user=ben, queue=queue)
    rule(box, name="nie", subject_words="Befund", set_state=Message.State.DONE)
    message = Message.objects.get(pk=mail("1", box).pk)
    # The first rule assigns; the second still files (it does not override the assignment); it stops the rest.
    assert (message.assignee, message.state, message.queue_entry.queue) == (anna, Message.State.NEW, queue)
    applied = AuditEvent.objects.filter(action="routing.applied").order_by("pk")
    assert [e.details["rule_name"] for e in applied] == ["erste", "zweite"]
    assert applied[1].details["assignee"] is None and applied[1].details["queue"] == "Befunde"


def test_telematik_id_comes_from_the_address_book(box, team):
    Contact.objects.create(
        kim_address="praxis@praxis-test.kim.telematik-test", telematik_id="1-2-ARZT-77", display_name="Praxis"
    )
    rule(box, telematik_id="1-2-*", set_state=Message.State.WAITING)
    known = mail("1", box)
    unknown = message_ingest(
        mailbox=box, uidl="2", raw=simple_mail().replace(b"praxis@praxis-test", b"fremd@praxis-test")
    )
    assert Message.objects.get(pk=known.pk).state == Message.State.WAITING
    assert Message.objects.get(pk=unknown.pk).state == Message.State.NEW


def test_a_fetch_batch_is_routed_in_its_transaction(box, team):
    anna, ben, cem = team
    rule(box, subject_words="Befund", assign=RoutingRule.Assign.ROUND_ROBIN)
    with BlobBatch() as blobs:
        staged = [message_stage(uidl=f"b{i}", raw=simple_mail(), pop3_size=None, blobs=blobs) for i in range(5)]
        stored = messages_store(mailbox=box, staged=staged, blobs=blobs)
    assert [Message.objects.get(pk=m.pk).assignee for m in stored] == [anna, ben, cem, anna, ben]
    assert AssignmentPeriod.objects.count() == 5 and AuditEvent.objects.filter(action="routing.applied").count() == 5
    assert Notification.objects.filter(user=anna).count() == 2


def test_a_refused_batch_routes_each_message_once(box, team):
    _anna, ben, _cem = team
    rule(box, subject_words="Befund", assign=RoutingRule.Assign.ROUND_ROBIN)
    first = mail("dup", box)
    with BlobBatch() as blobs:
        # The batch holds a UIDL that is already stored: it is refused and stored message by message.
        staged = [message_stage(uidl=u, raw=simple_mail(), pop3_size=None, blobs=blobs) for u in ("dup", "new")]
        stored = messages_store(mailbox=box, staged=staged, blobs=blobs)
    assert stored[0].pk == first.pk
    assert Message.objects.get(pk=stored[1].pk).assignee == ben
    assert AuditEvent.objects.filter(action="routing.applied").count() == 2
    assert AssignmentPeriod.objects.filter(message=first).count() == 1


# --- preview and rule changes ------------------------------------------------------------------------------------


def test_preview_shows_what_the_rule_would_do_and_changes_nothing(box, team):
    anna = team[0]
    owner = UserFactory(username="chefin")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    for i in range(3):
        mail(str(i), box, f"Labor {i}")
    mail("x", box, "Arztbrief")
    r = rule(box, subject_words="labor", assign=RoutingRule.Assign.ROUND_ROBIN, last_assignee=anna)
    before = (list(Message.objects.values_list("pk", "assignee_id", "state", "version")), AuditEvent.objects.count())

    preview = rule_preview(owner, box, r)

    assert preview.checked == 4 and preview.show_subjects
    assert [row.message.subject for row in preview.rows] == ["Labor 0", "Labor 1", "Labor 2"]
    # The turns continue after Anna, as they would for mail arriving now; the owner is a processing member too.
    assert [row.assignee for row in preview.rows] == ["Ben Test", "Cem Test", "Erika " + owner.last_name]
    after = (list(Message.objects.values_list("pk", "assignee_id", "state", "version")), AuditEvent.objects.count())
    assert after == before
    assert RoutingRule.objects.get().last_assignee == anna


def test_rule_changes_are_audited_and_checked(box, team):
    owner = UserFactory(username="chefin")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    data = RuleData(
        name="eAU",
        is_active=True,
        dienstkennung=" eAU ",
        sender_address="",
        sender_domain="",
        telematik_id="",
        subject_words="",
        assign="",
        assign_user_id=None,
        assign_group_id=None,
        set_state="",
        queue_name=" Aufnahme ",
        stop_after_match=True,
    )
    created = routing_rule_create(user=owner, mailbox=box, data=data)
    assert (created.dienstkennung, created.queue.name, created.position) == ("eAU", "Aufnahme", 1)
    event = AuditEvent.objects.get(action="routing.rule_changed")
    assert (event.actor, event.mailbox_id, event.details["change"], event.details["queue"]) == (
        owner,
        box.pk,
        "created",
        "Aufnahme",
    )

    from kimportal.errors import NotAllowed, PortalError

    with pytest.raises(NotAllowed):
        routing_rule_create(user=team[0], mailbox=box, data=data)
    outsider = UserFactory(username="fremd")
    with pytest.raises(PortalError):
        routing_rule_create(
            user=owner,
            mailbox=box,
            data=RuleData(**{**data.__dict__, "assign": "user", "assign_user_id": outsider.pk}),
        )
    with pytest.raises(PortalError):
        routing_rule_create(user=owner, mailbox=box, data=RuleData(**{**data.__dict__, "dienstkennung": ""}))
    assert RoutingRule.objects.count() == 1
