"""The out-of-office note (Abwesenheitsnotiz) through the portal: form checks in German, the simulated Account Manager
over its socket, the Fachdienst's automatic reply, the audit, and every way the provider can fail."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import ADDRESS, PASSWORD, PRAXIS, KimWorld
from tests.tisim.support import smtp_connect, smtp_user
from tisim.cm.autoreply import DIENSTKENNUNG, AbsenceStore
from tisim.cm.messages import get_header

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture

TEXT = "Die Aufnahme ist bis zum 7. geschlossen.\r\nBitte wenden Sie sich an die Notaufnahme."


def _url(world: KimWorld) -> str:
    return reverse("operations:kim-out-of-office", args=[world.mailbox.pk])


def _form(**overrides: object) -> dict[str, object]:
    now = timezone.localtime()
    data: dict[str, object] = {
        "active": "on",
        "starts_at": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (now + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
        "text": TEXT,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _note(world: KimWorld):
    return AbsenceStore(world.cm.data_dir).get(ADDRESS)


def _mail_from_the_practice(world: KimWorld, subject: str = "Befund") -> None:
    raw = (
        f"From: Praxis Mueller <{PRAXIS}>\r\nTo: <{ADDRESS}>\r\nSubject: {subject}\r\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{time.time_ns()}@praxis-mueller.kim.telematik-test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n"
    ).encode()
    with smtp_connect(world.cm) as conn:
        conn.login(smtp_user(PRAXIS), PASSWORD)
        conn.sendmail(PRAXIS, [ADDRESS], raw)


def _auto_replies(world: KimWorld) -> list[bytes]:
    found = [world.cm.maildrop_read(PRAXIS, u) for u in world.cm.maildrop_uidls(PRAXIS)]
    return [m for m in found if get_header(m, "X-KIM-Dienstkennung") == DIENSTKENNUNG]


def test_owner_sets_the_note_the_practice_gets_the_automatic_reply_and_it_is_audited(kim: KimWorld) -> None:
    response = kim.client_for(kim.owner).post(_url(kim), _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    note = _note(kim)
    assert note is not None and note.active
    # CRLF from the browser is one line break, as the user typed it.
    assert note.message == TEXT.replace("\r\n", "\n")
    event = AuditEvent.objects.get(action="kim.out_of_office_set")
    assert event.actor_id == kim.owner.pk and event.mailbox_id == kim.mailbox.pk
    assert event.details["active"] is True and event.details["characters"] == len(note.message)
    # The page shows what the provider holds now.
    page = kim.client_for(kim.owner).get(_url(kim)).content.decode()
    assert "Bitte wenden Sie sich an die Notaufnahme." in page
    assert re.search(r'<input type="checkbox" name="active"[^>]* checked', page)

    _mail_from_the_practice(kim)
    replies = _auto_replies(kim)
    assert len(replies) == 1
    assert b"Bitte wenden Sie sich an die Notaufnahme." in replies[0]

    # Switched off: the provider keeps the text, the practice gets no further reply.
    response = kim.client_for(kim.owner).post(_url(kim), _form(active=None))
    assert response.status_code == 302
    note = _note(kim)
    assert note is not None and not note.active and "Notaufnahme" in note.message
    _mail_from_the_practice(kim, "Befund 2")
    assert len(_auto_replies(kim)) == 1
    assert AuditEvent.objects.filter(action="kim.out_of_office_set").count() == 2


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"text": "x" * 2049}, "text", "Der Text ist zu lang: 2049 Zeichen, erlaubt sind höchstens 2048."),
        ({"text": "Bitte\x07 klingeln"}, "text", "unzulässige Steuerzeichen (U+0007)"),
        ({"text": "Bis \u202e71.21 zurück"}, "text", "unzulässige Steuerzeichen (U+202E)"),
        ({"text": "Null\x00byte"}, "text", "Nullzeichen sind nicht erlaubt."),
        ({"ends_at": "2026-01-01T10:00", "starts_at": "2026-01-02T10:00"}, "ends_at", "Das Ende muss nach dem Beginn"),
        ({"ends_at": "2026-01-02T10:00", "starts_at": "2026-01-02T10:00"}, "ends_at", "Das Ende muss nach dem Beginn"),
        ({"text": "   "}, "text", "Bitte einen Text für die Abwesenheitsnotiz eingeben."),
        ({"starts_at": ""}, "starts_at", "Bitte den Beginn angeben."),
        ({"ends_at": "morgen"}, "ends_at", "Bitte ein gültiges Datum und Uhrzeit eingeben."),
        # Year 1 in Berlin has no UTC time to send: refused at the field, not a 500 while building the request.
        ({"starts_at": "0001-01-01T00:00"}, "starts_at", "Dieses Datum liegt außerhalb des möglichen Bereichs."),
    ],
)
def test_bad_input_gets_a_german_error_and_nothing_reaches_the_provider(
    kim: KimWorld, overrides: dict[str, object], field: str, message: str
) -> None:
    seen = len(kim.am.am.seen)
    response = kim.client_for(kim.owner).post(_url(kim), _form(**overrides))
    assert response.status_code == 422
    errors = response.context["form"].errors[field]
    assert any(message in e for e in errors), errors
    assert message in response.content.decode()
    assert not [r for r in list(kim.am.am.seen)[seen:] if r.method == "PUT"]
    assert _note(kim) is None
    assert not AuditEvent.objects.filter(action="kim.out_of_office_set").exists()


def test_exactly_2048_characters_with_line_breaks_are_accepted(kim: KimWorld) -> None:
    text = ("a" * 99 + "\r\n") * 20 + "b" * 48  # 2,048 characters once the line breaks are single
    response = kim.client_for(kim.owner).post(_url(kim), _form(text=text))
    assert response.status_code == 302
    assert len(_note(kim).message) == 2048


def test_every_provider_failure_is_one_german_sentence_and_nothing_is_saved(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    expected = {
        401: "Die Anmeldung am Account Manager ist fehlgeschlagen",
        404: "Das KIM-Konto ist beim Anbieter nicht vorhanden.",
        409: "Diese KIM-Adresse ist bereits vergeben.",
        420: "entsprechen nicht den Regeln des Anbieters",
        423: "Der Eintrag im Verzeichnisdienst ist gesperrt",
        500: "Interner Fehler beim Account Manager",
        502: "Der Verzeichnisdienst (VZD) ist für den Account Manager nicht erreichbar",
    }
    for status, text in expected.items():
        kim.am.am.arm_fault("status", status=status, path="/outofoffice")
        response = client.post(_url(kim), _form())
        assert response.status_code == 422, status
        page = response.content.decode()
        assert text in page, (status, page[:3000])
        if status >= 500:
            assert "ist ungewiss" in page
        else:
            assert "Es wurde nichts geändert." in page
        assert _note(kim) is None
    # A cut connection: no answer at all.
    kim.am.am.arm_fault("drop", path="/outofoffice")
    page = client.post(_url(kim), _form()).content.decode()
    assert "nicht erreichbar" in page or "nicht rechtzeitig" in page
    # The provider down altogether: the page still opens and says so.
    kim.am.am.stop()
    response = client.get(_url(kim))
    assert response.status_code == 200
    assert "Der Account Manager des KIM-Anbieters ist nicht erreichbar." in response.content.decode()
    response = client.post(_url(kim), _form())
    assert response.status_code == 422
    assert "Der Account Manager des KIM-Anbieters ist nicht erreichbar." in response.content.decode()
    assert _note(kim) is None
    assert not AuditEvent.objects.filter(action="kim.out_of_office_set").exists()


def test_a_wrong_stored_password_is_a_clear_refusal(kim: KimWorld) -> None:
    kim.cm.add_account(ADDRESS, "Anderswo-Geaendert-1!")  # changed outside the portal
    response = kim.client_for(kim.owner).post(_url(kim), _form())
    assert response.status_code == 422
    assert "Die Anmeldung am Account Manager ist fehlgeschlagen" in response.content.decode()
    assert _note(kim) is None


def test_the_absence_pages_lead_to_the_note(kim: KimWorld) -> None:
    """Where a substitute is entered, the provider's automatic reply is one link away (mailbox links by URL name)."""
    for user, url in ((kim.owner, reverse("mailbox:absences")), (kim.manager, reverse("manage:absences"))):
        page = kim.client_for(user).get(url).content.decode()
        assert f'<a href="{reverse("operations:kim-list")}">KIM-Konten</a>' in page


def _seen(page: str) -> str:
    found = re.search(r'<input type="hidden" name="seen" value="([0-9a-f]+)"', page)
    assert found is not None, page[:2000]
    return found.group(1)


def test_two_editors_at_once_the_later_save_is_refused_with_its_input_kept(kim: KimWorld) -> None:
    owner, manager = kim.client_for(kim.owner), kim.client_for(kim.manager)
    assert kim.client_for(kim.owner).post(_url(kim), _form(text="Bis Montag geschlossen.")).status_code == 302
    owner_seen = _seen(owner.get(_url(kim)).content.decode())
    manager_seen = _seen(manager.get(_url(kim)).content.decode())
    assert owner_seen == manager_seen

    assert manager.post(_url(kim), {**_form(text="Bis Freitag geschlossen."), "seen": manager_seen}).status_code == 302
    puts = len([r for r in kim.am.am.seen if r.method == "PUT"])
    response = owner.post(_url(kim), {**_form(text="Bis Mittwoch geschlossen."), "seen": owner_seen})

    assert response.status_code == 409
    page = response.content.decode()
    assert "Die Abwesenheitsnotiz wurde inzwischen geändert" in page
    assert "Bis Freitag geschlossen." in page  # what the provider holds now
    assert "Bis Mittwoch geschlossen.</textarea>" in page  # what the owner typed
    assert _note(kim).message == "Bis Freitag geschlossen."
    assert len([r for r in kim.am.am.seen if r.method == "PUT"]) == puts
    assert AuditEvent.objects.filter(action="kim.out_of_office_set", actor=kim.owner).count() == 1

    # Saving again, having seen the colleague's note, replaces it.
    response = owner.post(_url(kim), {**_form(text="Bis Mittwoch geschlossen."), "seen": _seen(page)})
    assert response.status_code == 302
    assert _note(kim).message == "Bis Mittwoch geschlossen."


def test_an_unchanged_note_saves_with_its_fingerprint(kim: KimWorld) -> None:
    client = kim.client_for(kim.owner)
    seen = _seen(client.get(_url(kim)).content.decode())
    response = client.post(_url(kim), {**_form(), "seen": seen})
    assert response.status_code == 302
    assert _note(kim).message == TEXT.replace("\r\n", "\n")


def test_a_failed_reading_before_the_save_says_that_nothing_changed(kim: KimWorld) -> None:
    client = kim.client_for(kim.owner)
    seen = _seen(client.get(_url(kim)).content.decode())
    kim.am.am.arm_fault("status", status=500, path="/outofoffice")  # the reading, not the save
    response = client.post(_url(kim), {**_form(), "seen": seen})
    assert response.status_code == 422
    page = response.content.decode()
    assert "Interner Fehler beim Account Manager" in page and "Es wurde nichts geändert." in page
    assert "ist ungewiss" not in page
    assert _note(kim) is None


def test_a_note_ending_at_the_calendars_end_is_an_unexpected_answer_not_a_500(kim: KimWorld) -> None:
    """9999-12-31T23:30Z is valid RFC 3339 but has no Berlin time: both pages raised OverflowError when showing it."""
    from operations.clients.accountmanager import OutOfOffice
    from operations.services import kimadmin

    end = dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.UTC)
    with kimadmin._client(kim.account) as am:  # as another client of the provider could have set it
        am.set_out_of_office(
            OutOfOffice(active=True, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), end=end, message="x")
        )
    client = kim.client_for(kim.owner)
    client.raise_request_exception = False
    for url in (_url(kim), reverse("operations:kim-account", args=[kim.mailbox.pk])):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Der Account Manager hat eine unerwartete Antwort geschickt." in response.content.decode()
