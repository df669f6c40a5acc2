"""What the parser had to work around is kept untranslated and shown in the reader's language.

The fetch writes a received message's problems once, in whatever language the worker runs; colleagues read the
message later, some with the portal in English. So the row keeps the msgid and its parameters (kimportal.texts),
a part's name ("Teil 2") too, and the page translates. Rows written before keep their German sentences and show
them as they are.
"""

from __future__ import annotations

import html

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from mailbox.models import Message
from mailbox.parsing import parse_message
from mailbox.parsing.headers import SUBJECT_LIMIT
from mailbox.services.fetch import account_fetch
from tests.mailbox.conftest import HOSPITAL, PRAXIS

pytestmark = pytest.mark.django_db(transaction=True)

LONG_SUBJECT = "Befund " * (SUBJECT_LIMIT // 7 + 10)
RAW = (
    f"From: Praxis Test <{PRAXIS}>\r\nTo: {HOSPITAL}\r\nMessage-ID: <sprache-1@praxis-test.kim.telematik-test>\r\n"
    f"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\nSubject: {LONG_SUBJECT}\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    "--b1\r\nContent-Type: text/plain; charset=x-klingon-9\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Größe\r\n--b1--\r\n"
).encode()
LENGTH = len(" ".join(LONG_SUBJECT.split()))

SUBJECT_DE = f"Betreff mit {LENGTH} Zeichen gekürzt; vollständig im Quelltext"
SUBJECT_EN = f"Subject of {LENGTH} characters shortened; complete in the source"
CHARSET_DE = "Unbekannter Zeichensatz „x-klingon-9“ (Teil 2); als UTF-8/Windows-1252 gelesen"
CHARSET_EN = "Unknown character set “x-klingon-9” (part 2); read as UTF-8/Windows-1252"


def _received(cm, account, *, worker_language: str) -> Message:
    """Fetched by the worker, which runs in a language of its own: what it stores must not depend on that."""
    uidl = cm.deliver(HOSPITAL, RAW)
    with translation.override(worker_language):
        assert account_fetch(account_id=account.pk).error == ""
    return Message.objects.get(uidl=uidl)


def _page(client, user, message: Message, *, language: str | None) -> str:
    client.force_login(user)
    if language is None:
        client.cookies.pop(settings.LANGUAGE_COOKIE_NAME, None)
    else:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(reverse("mailbox:message-detail", args=[message.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_the_row_keeps_the_msgid_and_its_parameters(cm, account):
    message = _received(cm, account, worker_language="en")

    assert {
        "msgid": "Betreff mit %(length)s Zeichen gekürzt; vollständig im Quelltext",
        "params": {"length": LENGTH},
    } in (message.parse_problems)
    charset = next(p for p in message.parse_problems if "Zeichensatz" in p["msgid"])
    assert charset["params"] == {
        "charset": "x-klingon-9",
        "where": {"msgid": "Teil %(number)s", "params": {"number": 2}},
    }


def test_an_english_reader_reads_the_problems_in_english(cm, account, member, client):
    message = _received(cm, account, worker_language="de")

    english = _page(client, member, message, language="en")
    assert SUBJECT_EN in english and CHARSET_EN in english
    assert "gekürzt" not in english and "Zeichensatz" not in english


def test_a_german_reader_reads_them_in_german(cm, account, member, client):
    message = _received(cm, account, worker_language="en")

    for language in (None, "de"):
        german = _page(client, member, message, language=language)
        assert SUBJECT_DE in german and CHARSET_DE in german
        assert "shortened" not in german and "character set" not in german


def test_a_row_written_before_shows_its_german_sentences_as_they_are(cm, account, member, client):
    message = _received(cm, account, worker_language="de")
    legacy = "Unbekannter Zeichensatz „x-alt“ (Teil 3); als UTF-8/Windows-1252 gelesen"
    # A row written before kept the German sentences; one problem written since sits beside them.
    Message.objects.filter(pk=message.pk).update(
        parse_problems=[
            "Betreff mit 12000 Zeichen gekürzt; vollständig im Quelltext",
            legacy,
            message.parse_problems[0],
        ]
    )

    english = _page(client, member, message, language="en")
    assert "Betreff mit 12000 Zeichen gekürzt; vollständig im Quelltext" in english and legacy in english
    assert SUBJECT_EN in english
    german = _page(client, member, message, language=None)
    assert legacy in german and SUBJECT_DE in german


def test_the_parser_result_renders_in_the_active_language():
    parsed = parse_message(RAW)
    with translation.override("en"):
        assert parsed.problem_texts == [SUBJECT_EN, CHARSET_EN]
    with translation.override("de"):
        assert parsed.problem_texts == [SUBJECT_DE, CHARSET_DE]


def test_a_message_stored_raw_only_says_so_in_the_reader_language(cm, account, member, client):
    from django.db import connection

    # A real refusal of the parsed fields: PostgreSQL rejects a row with a subject as invalid data (class 22).
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION parse_test_refuse() RETURNS trigger AS $$ BEGIN IF NEW.subject <> '' THEN "
            "RAISE EXCEPTION 'simulated refusal' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER parse_test_refuse BEFORE INSERT ON mailbox_message "
            "FOR EACH ROW EXECUTE FUNCTION parse_test_refuse()"
        )
    try:
        message = _received(cm, account, worker_language="en")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER parse_test_refuse ON mailbox_message")
            cursor.execute("DROP FUNCTION parse_test_refuse()")

    raw_only = "Die Nachricht konnte nicht zerlegt gespeichert werden; nur der Rohtext liegt vor."
    assert message.subject == "" and message.parse_problems == [{"msgid": raw_only, "params": {}}]
    english = _page(client, member, message, language="en")
    assert "The message could not be stored in its parts; only the raw text is available." in english
    assert raw_only in _page(client, member, message, language=None)
