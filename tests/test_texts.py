"""Stored texts (kimportal.texts): kept as msgid and parameters, translated when shown."""

from __future__ import annotations

import json

from django.utils import translation

from kimportal.texts import N_, join, render

HELD = "Zurückgehalten: Das Postfach %(address)s ist abgeschaltet. Die Nachricht wird nicht gesendet und bleibt " \
    "erhalten; sie geht hinaus, sobald das Postfach wieder aktiv ist."  # fmt: skip
NEXT = "Nächster Versuch um %(time)s."


def test_a_stored_text_is_plain_json_and_translated_when_rendered():
    with translation.override("en"):
        stored = join(N_(HELD) % {"address": "a@b.kim"}, N_(NEXT) % {"time": "10:00:00"}).stored
    assert json.loads(json.dumps(stored)) == stored
    assert stored[0] == {"msgid": HELD, "params": {"address": "a@b.kim"}}
    with translation.override("en"):
        assert render(stored) == (
            "Held back: the mailbox a@b.kim is switched off. The message is not sent and is kept; it goes out as "
            "soon as the mailbox is active again. Next attempt at 10:00:00."
        )
    with translation.override("de"):
        assert render(stored).startswith("Zurückgehalten: Das Postfach a@b.kim") and render(stored).endswith(
            "10:00:00."
        )


def test_a_parameter_that_is_a_text_is_translated_too():
    stored = (N_("Meldung: %(text)s") % {"text": N_("Zustellung fehlgeschlagen.")}).stored
    with translation.override("en"):
        assert render(stored) == "Message: Delivery failed."


def test_a_legacy_sentence_is_shown_as_written_and_a_mismatched_row_falls_back_to_german():
    with translation.override("en"):
        assert render("Vom Clientmodul abgelehnt: 550 x") == "Vom Clientmodul abgelehnt: 550 x"
        assert render("") == ""
        # A row whose parameters no longer fit the translation: the German msgid with them, never an exception.
        assert render({"msgid": "Vom Clientmodul abgelehnt: %(reply)s", "params": {"other": 1}}) == (
            "Vom Clientmodul abgelehnt: %(reply)s"
        )
