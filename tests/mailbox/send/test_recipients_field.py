"""The compose form's recipient lists: order kept, duplicates dropped, and a hand-made flood read in linear time."""

from __future__ import annotations

import time
from types import SimpleNamespace

from mailbox.forms_compose import DraftForm, RecipientsField, kim_address_error
from mailbox.services.compose import DEFAULT_DIENSTKENNUNG, address_problem, normalize_addresses


def test_addresses_keep_their_order_and_lose_duplicates_and_brackets():
    value = ["B@praxis.kim.telematik, <a@praxis.kim.telematik>", "b@praxis.kim.telematik", " ", "c@x.kim.telematik"]
    expected = ["b@praxis.kim.telematik", "a@praxis.kim.telematik", "c@x.kim.telematik"]
    assert RecipientsField().to_python(value) == expected


def test_a_hand_made_post_of_fifty_thousand_addresses_is_read_at_once():
    # One posted value (the form's body limit lets through about 2.5 MB): before, each address was compared with all
    # before it, 1.25 billion comparisons (over ten seconds of a server thread) before any limit was checked.
    flood = ",".join(f"p{n}@praxis.kim.telematik" for n in range(50_000))
    started = time.process_time()
    found = RecipientsField().to_python(flood + ",p7@praxis.kim.telematik")
    took = time.process_time() - started
    assert len(found) == 50_000 and found[7] == "p7@praxis.kim.telematik"
    assert took < 2, f"{took:.1f} s of CPU for 50,000 addresses"


def test_an_address_typed_with_capitals_is_accepted_and_stored_lower_cased():
    # Domains are case-insensitive: the shared pattern takes any case (the directory lists such an address as a
    # recipient), and compose stores every address lower-cased, as the directory compares them.
    typed = "Praxis@Example.KIM.Telematik-Test"
    assert address_problem(typed) == ""
    assert kim_address_error(typed) == ""
    mailbox = SimpleNamespace(pk=1, display_name="Station 3", address="station3@klinikum.kim.telematik-test")
    form = DraftForm(
        {
            "mailbox": "1",
            "to": ["Empfang@Praxis.KIM.Telematik"],
            "to_typed": typed,
            "dienstkennung": DEFAULT_DIENSTKENNUNG,
        },
        mailboxes=[mailbox],
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["to"] == ["empfang@praxis.kim.telematik", "praxis@example.kim.telematik-test"]
    assert normalize_addresses([f"Praxis <{typed}>"]) == ["praxis@example.kim.telematik-test"]
