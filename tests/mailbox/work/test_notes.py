"""Notes and @mentions."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from kimportal.errors import PortalError
from mailbox.models import (
    Message,
    Note,
    Notification,
)
from mailbox.services import notes
from tests.mailbox.work.support import Role, add_member, hold, snapshot

pytestmark = pytest.mark.django_db


def test_note_mentions_notify_members_except_observers_and_the_author(alice, bob, reader, observer, outsider, message):
    body = "Bitte @bernd und @Rita ansehen, zur Kenntnis @otto, ich @anna, und @fremd @niemand"

    note = notes.note_add(user=alice, message=message, body=body)

    assert note.body == body and note.author == alice
    assert set(note.mentions.all()) == {bob, reader, observer, alice}
    notified = Notification.objects.filter(kind=Notification.Kind.MENTION, message=message)
    assert sorted(notified.values_list("user__username", flat=True)) == ["bernd", "rita"]
    assert all(n.actor == alice for n in notified)
    assert Message.objects.get(pk=message.pk).version == 2


def test_email_addresses_in_notes_are_not_mentions(alice, bob, message):
    note = notes.note_add(user=alice, message=message, body="Kopie an bernd@klinikum-test.de")
    assert not note.mentions.exists()
    assert not Notification.objects.exists()


@pytest.mark.parametrize("body", ["", "   ", "x" * 10_001, "\u200b\n\u200d\u2060\u200f", "\u00ad\ufeff"])
def test_empty_or_huge_note_is_refused(body, alice, message):
    before = snapshot(message)
    with pytest.raises(PortalError):
        notes.note_add(user=alice, message=message, body=body)
    assert snapshot(message) == before


def _post_note(client, message, body: str, *, version: int):
    url = reverse("mailbox:message-note", args=[message.pk])
    return client.post(url, {"version": version, "body": body}, HTTP_HX_REQUEST="true")


def _note_field(response) -> str:
    found = re.search(r'<textarea id="note-body"[^>]*>(.*?)</textarea>', response.content.decode(), re.S)
    assert found is not None
    return html.unescape(found.group(1))


def test_a_note_from_a_page_that_missed_a_colleagues_note_is_saved_too(client, alice, bob, message):
    # Notes only add: the version alice's page loaded is out of date, and nothing of bob's is overwritten.
    notes.note_add(user=bob, message=message, body="Ich schaue es mir an.")
    client.force_login(alice)

    response = _post_note(client, message, "Rückruf bei Praxis nötig", version=1)

    assert response.status_code == 200
    assert _note_field(response) == ""
    bodies = list(Note.objects.order_by("created_at", "id").values_list("author__username", "body"))
    assert bodies == [("bernd", "Ich schaue es mir an."), ("anna", "Rückruf bei Praxis nötig")]


def test_a_note_refused_because_a_colleague_holds_the_message_comes_back_in_its_field(client, alice, bob, message):
    hold(message, bob, expires=timezone.now() + timedelta(minutes=5))
    client.force_login(alice)
    typed = "Befund <b>unklar</b> & Rückruf bei @bernd nötig\nZweite Zeile"

    response = _post_note(client, message, typed, version=1)

    assert response.status_code == 423
    assert _note_field(response) == typed
    assert "<b>unklar</b>" not in response.content.decode()
    assert list(Note.objects.filter(author=alice)) == []


def test_without_htmx_a_refused_note_comes_back_in_its_field_too(client, alice, bob, message):
    # A plain form post (no JavaScript) was answered with a redirect: the error came back, the typed text did not.
    client.force_login(alice)
    typed = "Befund <b>unklar</b>, Rückruf nötig"

    too_long = client.post(reverse("mailbox:message-note", args=[message.pk]), {"version": 1, "body": "x" * 10_001})
    hold(message, bob, expires=timezone.now() + timedelta(minutes=5))  # the page above gave alice the lock
    locked = client.post(reverse("mailbox:message-note", args=[message.pk]), {"version": 1, "body": typed})

    assert too_long.status_code == 422 and _note_field(too_long) == "x" * 10_001
    assert locked.status_code == 423 and _note_field(locked) == typed
    assert 'id="work-error"' in locked.content.decode() and "<b>unklar</b>" not in locked.content.decode()
    assert list(Note.objects.filter(author=alice)) == []


def test_a_note_over_the_limit_is_refused_and_kept(client, alice, message):
    client.force_login(alice)
    typed = "x" * 10_001

    response = _post_note(client, message, typed, version=1)

    assert response.status_code == 422
    assert _note_field(response) == typed
    assert not Note.objects.exists()


def test_a_saved_note_empties_its_field(client, alice, message):
    client.force_login(alice)
    response = _post_note(client, message, "Erledigt am Telefon.", version=1)
    assert response.status_code == 200
    assert _note_field(response) == ""


def test_the_writer_is_told_which_mentioned_names_reach_no_one(client, alice, bob, observer, outsider, message):
    former = add_member(message.mailbox, "paula", Role.PROCESSOR, "Paula", "Pause")
    former.is_active = False
    former.save()
    client.force_login(alice)

    response = _post_note(client, message, "@bernd @otto @fremd @paula @Niemand bitte ansehen", version=1)

    assert response.status_code == 200
    text = response.content.decode()
    assert "Nicht benachrichtigt, weil nicht Mitglied dieses Postfachs: @fremd, @niemand, @paula." in text
    notified = Notification.objects.filter(kind=Notification.Kind.MENTION)
    assert list(notified.values_list("user__username", flat=True)) == ["bernd"]


def test_mentions_that_all_reach_members_say_only_saved(client, alice, bob, message):
    client.force_login(alice)
    response = _post_note(client, message, "@bernd bitte", version=1)
    assert "Notiz gespeichert." in response.content.decode()
    assert "Nicht benachrichtigt" not in response.content.decode()


def _assign_form(response) -> tuple[str, str]:
    text = response.content.decode()
    form = re.search(r'<form class="assign-form".*?</form>', text, re.S)
    assert form is not None
    note = re.search(r'<input type="text" name="note"[^>]*value="([^"]*)"', form.group(0))
    chosen = re.search(r'<option value="(\d+)" selected>', form.group(0))
    return html.unescape(note.group(1)) if note else "", chosen.group(1) if chosen else ""


@pytest.mark.parametrize("htmx", [False, True])
def test_a_refused_assignment_keeps_its_hint_and_whom_it_was_for(client, alice, bob, message, htmx):
    # A colleague acted meanwhile: the assignment is refused, and what was typed for the colleague is not lost.
    notes.note_add(user=bob, message=message, body="Ich schaue es mir an.")
    client.force_login(alice)
    headers = {"HX-Request": "true"} if htmx else {}
    hint = 'Bitte "Rückruf" <heute>'

    refused = client.post(
        reverse("mailbox:message-assign", args=[message.pk]),
        {"version": 1, "assignee": bob.pk, "note": hint},
        headers=headers,
    )

    assert refused.status_code == 409
    assert _assign_form(refused) == (hint, str(bob.pk))
    assert "<heute>" not in refused.content.decode()
    message.refresh_from_db()
    assert message.assignee_id is None
    done = client.post(
        reverse("mailbox:message-assign", args=[message.pk]),
        {"version": message.version, "assignee": bob.pk, "note": hint},
        headers=headers,
    )
    if htmx:
        assert done.status_code == 200 and _assign_form(done)[0] == ""
    message.refresh_from_db()
    assert message.assignee_id == bob.pk


def test_a_hand_made_assignee_that_only_looks_like_a_number_is_a_form_error(client, alice, message):
    # "²" passes str.isdigit() but is no number int() reads.
    client.force_login(alice)
    response = client.post(
        reverse("mailbox:message-assign", args=[message.pk]), {"version": 1, "assignee": "²", "note": "Bitte"}
    )
    assert response.status_code == 422
    assert _assign_form(response)[0] == "Bitte"


def test_the_same_note_again_at_once_is_one_note_and_later_or_other_words_are_new(alice, bob, message):
    first = notes.note_add(user=alice, message=message, body="Befund liegt vor")
    assert notes.note_add(user=alice, message=message, body="  Befund liegt vor ") == first
    assert Note.objects.filter(message=message).count() == 1
    notes.note_add(user=bob, message=message, body="Befund liegt vor")  # a colleague's note of the same words
    notes.note_add(user=alice, message=message, body="Befund liegt vor, Rückruf folgt")
    assert Note.objects.filter(message=message).count() == 3
    Note.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(seconds=11))
    notes.note_add(user=alice, message=message, body="Befund liegt vor")  # written again later: a new note
    assert Note.objects.filter(message=message, author=alice, body="Befund liegt vor").count() == 2
