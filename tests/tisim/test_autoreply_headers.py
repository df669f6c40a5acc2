"""The simulated CM's automatic reply copies the subject and ids of the mail it answers: never as new headers."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes

from tisim.cm.autoreply import Absence, absence_reply

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
NOTE = Absence(active=True, start=NOW, end=NOW, message="Bin weg.", period="p1")


def test_a_line_break_in_an_encoded_subject_adds_no_header() -> None:
    original = (
        b"From: <praxis@example.kim.telematik>\r\n"
        b"To: <aufnahme@klinikum.kim.telematik>\r\n"
        b"Subject: =?utf-8?q?Befund=0D=0ABcc:_abgreifer@example.org?=\r\n"
        b"Message-ID: <1@example>\r\n\r\nHallo\r\n"
    )
    reply = absence_reply(
        original, absent="aufnahme@klinikum.kim.telematik", sender="praxis@example.kim.telematik", note=NOTE, now=NOW
    )
    message = message_from_bytes(reply)
    assert message["Bcc"] is None
    assert "abgreifer@example.org" in str(message["Subject"])  # kept as text of the subject
    assert message["In-Reply-To"] == "<1@example>"
    assert message.get_payload().strip() == "Bin weg."
