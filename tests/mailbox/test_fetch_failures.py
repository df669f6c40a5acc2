"""No poison message: one message that cannot be fetched costs the others nothing, is never deleted
unstored, and is shown to the mailbox's owners after FetchFailure.SHOW_AFTER_TRIES tries.

Everything runs over the simulator's real POP3 (TLS, pinned), with its per-message faults.
"""

from __future__ import annotations

import html

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone, translation

from mailbox.models import FetchFailure, KimAccount, Membership, Message
from mailbox.services.fetch import RETRY_FIRST_SECONDS, account_fetch
from tests.mailbox.conftest import HOSPITAL, simple_mail
from tests.mailbox.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _due_again() -> None:
    """The failing message's backoff has run out (instead of waiting for it)."""
    FetchFailure.objects.update(next_try_at=timezone.now())


def _page(client, user, account, *, language: str = "de") -> str:
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(reverse("mailbox:mailbox-messages", args=[account.mailbox_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_one_failing_message_among_fifty_the_others_are_stored_and_it_is_shown_to_owners(cm, account, client):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Brief {i:02d}")) for i in range(50)]
    poison = uidls[17]
    cm.faults.add_retr(HOSPITAL, poison, mode="err", code="SYS/TEMP", times=None)
    owner = UserFactory(username="leitung")
    MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
    reader = UserFactory(username="lesend")
    MembershipFactory(mailbox=account.mailbox, user=reader, role=Membership.Role.READER)

    first = account_fetch(account_id=account.pk)

    assert first.error == ""
    assert len(first.stored) == 49
    assert set(Message.objects.values_list("uidl", flat=True)) == set(uidls) - {poison}
    assert cm.maildrop_uidls(HOSPITAL) == [poison], "the failing one is never deleted"
    failure = FetchFailure.objects.get()
    assert (failure.uidl, failure.tries) == (poison, 1)
    assert "SYS/TEMP" in failure.last_error_text
    # Its own backoff: not retried at once, and the account itself is fine.
    assert (failure.next_try_at - failure.last_failed_at).total_seconds() == RETRY_FIRST_SECONDS
    account.refresh_from_db()
    assert account.status == KimAccount.Status.OK
    assert account_fetch(account_id=account.pk).stored == []
    assert FetchFailure.objects.get().tries == 1, "not tried again before it is due"
    assert "kann nicht abgerufen werden" not in _page(client, owner, account), "not shown after one try"

    delays = []
    for _ in range(FetchFailure.SHOW_AFTER_TRIES - 1):
        _due_again()
        account_fetch(account_id=account.pk)
        failure = FetchFailure.objects.get()
        delays.append(failure.next_try_at - failure.last_failed_at)
    assert failure.tries == FetchFailure.SHOW_AFTER_TRIES
    assert delays == sorted(delays) and delays[0] < delays[-1], "the backoff grows"
    assert cm.maildrop_uidls(HOSPITAL) == [poison]

    html = _page(client, owner, account)
    assert f"Nachricht {poison}" in html and "kann nicht abgerufen werden" in html
    assert "SYS/TEMP" in html
    assert "kann nicht abgerufen werden" not in _page(client, reader, account), "owners and staff only"
    staff = UserFactory(username="admin-it", is_staff=True)
    MembershipFactory(mailbox=account.mailbox, user=staff, role=Membership.Role.READER)
    assert "kann nicht abgerufen werden" in _page(client, staff, account)

    # The CM recovers: the message is stored and disappears from the page.
    cm.clear_faults()
    _due_again()
    last = account_fetch(account_id=account.pk)
    assert last.error == "" and len(last.stored) == 1
    assert Message.objects.count() == 50
    assert cm.maildrop_uidls(HOSPITAL) == []
    assert not FetchFailure.objects.exists()
    assert "kann nicht abgerufen werden" not in _page(client, owner, account)


def test_a_stalled_retr_ends_with_the_read_timeout_and_the_others_arrive(cm, account):
    account.timeout_seconds = 1.0
    account.save()
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Stau {i}", body="Zeile\n" * 2000)) for i in range(3)]
    cm.faults.add_retr(HOSPITAL, uidls[0], mode="stall", after_bytes=500, times=None)

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    assert sorted(Message.objects.values_list("uidl", flat=True)) == sorted(uidls[1:])
    assert cm.maildrop_uidls(HOSPITAL) == [uidls[0]]
    failure = FetchFailure.objects.get()
    assert failure.uidl == uidls[0]
    assert "Zeitüberschreitung" in failure.last_error_text


def test_a_connection_that_keeps_breaking_ends_the_round_as_an_account_error(cm, account):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Bruch {i}", body="x" * 3000)) for i in range(5)]
    cm.inject_fault(HOSPITAL, "drop_retr", after_bytes=100, times=None)

    result = account_fetch(account_id=account.pk)

    # Three broken connections in one round: the CM, not a message; the account backs off.
    assert "abgebrochen" in result.error or "nicht erreichbar" in result.error
    assert FetchFailure.objects.count() == 3
    assert Message.objects.count() == 0
    assert sorted(cm.maildrop_uidls(HOSPITAL)) == sorted(uidls)
    account.refresh_from_db()
    assert account.status == KimAccount.Status.UNREACHABLE


def test_an_answer_shorter_than_list_said_is_not_stored_and_not_deleted(cm, account):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Kurz {i}", body="Inhalt\n" * 500)) for i in range(2)]
    cm.faults.add_retr(HOSPITAL, uidls[0], mode="short", after_bytes=300, times=1)

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    assert list(Message.objects.values_list("uidl", flat=True)) == [uidls[1]]
    assert cm.maildrop_uidls(HOSPITAL) == [uidls[0]]
    failure = FetchFailure.objects.get()
    size = len(cm.maildrop_read(HOSPITAL, uidls[0]))
    assert "unvollständig" in failure.last_error_text and f"von {size} Bytes" in failure.last_error_text

    _due_again()
    account_fetch(account_id=account.pk)
    assert Message.objects.get(uidl=uidls[0]).subject == "Kurz 0", "complete on the next try"
    assert not FetchFailure.objects.exists()


def test_a_message_the_cm_no_longer_lists_loses_its_failure(cm, account):
    uidl = cm.deliver(HOSPITAL, simple_mail("Verschwindet"))
    cm.faults.add_retr(HOSPITAL, uidl, mode="err", times=None)
    account_fetch(account_id=account.pk)
    assert FetchFailure.objects.filter(uidl=uidl).exists()

    # Removed on the CM meanwhile (by another client, or its retention time ran out).
    (cm.context.store.path_for(HOSPITAL) / f"{uidl}.eml").unlink()
    account_fetch(account_id=account.pk)

    assert not FetchFailure.objects.exists()
    assert Message.objects.count() == 0


def test_a_hostile_endless_line_is_stored_without_holding_it(cm, account):
    # 6 MB without a single line end, then a normal mail behind it.
    hostile = b"From: x@y.de\r\nSubject: Endlos\r\nContent-Type: text/plain\r\n\r\n" + b"A" * 6_000_000
    cm.deliver(HOSPITAL, hostile)
    cm.deliver(HOSPITAL, simple_mail("Dahinter"))

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    assert sorted(Message.objects.values_list("subject", flat=True)) == ["Dahinter", "Endlos"]
    endless = Message.objects.get(subject="Endlos")
    assert endless.size == len(hostile) + 2
    assert cm.maildrop_uidls(HOSPITAL) == []


def test_why_a_message_and_the_account_fail_is_shown_in_the_reader_language(cm, account, client):
    poison = cm.deliver(HOSPITAL, simple_mail("Brief"))
    cm.faults.add_retr(HOSPITAL, poison, mode="err", code="SYS/TEMP", times=None)
    owner = UserFactory(username="leitung")
    MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
    # The worker runs in English here; German readers must still read German (and the other way round).
    with translation.override("en"):
        account_fetch(account_id=account.pk)
    FetchFailure.objects.update(tries=FetchFailure.SHOW_AFTER_TRIES)
    failure = FetchFailure.objects.get()
    assert failure.last_error["msgid"] == "Vorübergehender Fehler im Clientmodul [SYS/TEMP]: %(detail)s"

    german = html.unescape(_page(client, owner, account, language="de"))
    assert f"Nachricht {poison}" in german and "Vorübergehender Fehler im Clientmodul [SYS/TEMP]" in german
    english = html.unescape(_page(client, owner, account, language="en"))
    assert f"Message {poison}" in english and "Temporary error in the Client Module [SYS/TEMP]" in english
    assert "Vorübergehender Fehler" not in english

    account.set_password("falsch")
    account.save()
    cm.clear_faults()
    with translation.override("de"):
        account_fetch(account_id=account.pk)
    account.refresh_from_db()
    assert account.status == KimAccount.Status.AUTH_FAILED
    assert account.status_message["msgid"] == "Anmeldung abgelehnt – Benutzername oder Passwort falsch (%(detail)s)."
    english = html.unescape(_page(client, owner, account, language="en"))
    assert "Login rejected – incorrect user name or password" in english and "Passwort falsch" not in english
