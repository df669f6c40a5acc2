"""Browser test of the contacts page on a phone (390 px), by keyboard: hundreds of contacts, one changed in the
directory (with a hostile, very long name) and one gone from it. The changed one says what changed and can be taken
as seen; after that the keyboard goes on from its row, not from the top of the list. The one that is gone offers no
"Gesehen" (it would say "aktuell" for an address nobody can reach). axe finds no WCAG 2.0/2.1 A/AA violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from directory.models import Contact
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import PHONE, assert_no_horizontal_scroll

PASSWORD = "kim-portal-e2e-pw"
HOSTILE = '<img src=x onerror="alert(1)">' + "Ü" * 220


@pytest.mark.e2e
def test_contacts_by_keyboard_on_a_phone(browser, live_server, transactional_db, django_user_model):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    Contact.objects.bulk_create(
        Contact(kim_address=f"kontakt-{n:03d}@x.kim.telematik-test", display_name=f"Kontakt {n:03d}", use_count=n)
        for n in range(300)
    )
    changed = Contact.objects.create(
        kim_address="geaendert@x.kim.telematik-test",
        display_name=HOSTILE,
        use_count=150,  # in the middle of the list
        status=Contact.Status.CHANGED,
        changed_fields=["addresses", "display_name"],
    )
    vanished = Contact.objects.create(
        kim_address="weg@x.kim.telematik-test", display_name="Praxis Weg", use_count=149, status=Contact.Status.VANISHED
    )
    context = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{live_server.url}/login/?next=/directory/kontakte/")
        page.get_by_label("Benutzername").fill("station")
        page.get_by_label("Passwort").fill(PASSWORD)
        page.get_by_role("button", name="Anmelden").click()
        expect(page.get_by_role("heading", name="Lokale Kontakte und Favoriten")).to_be_visible()
        expect(page.locator("[data-contact]")).to_have_count(302)

        row = page.locator(f"#kontakt-{changed.pk}")
        expect(row.locator("[data-changed]")).to_have_text("Geändert: KIM-Adressen/Version, Name")
        expect(page.locator(f"#kontakt-{vanished.pk}")).to_contain_text("nicht mehr im Verzeichnis")
        seen = page.get_by_role("button", name=re.compile("^Gesehen"))
        expect(seen).to_have_count(1)  # the changed contact's; none for the one that is gone
        expect(seen).to_have_accessible_name(f"Gesehen: {HOSTILE}")
        assert_no_horizontal_scroll(page)
        # An unbroken name breaks inside its cell: it made the column some 3,000 px wide within the table's scroller.
        name_cell = row.locator("td").first.bounding_box()
        assert name_cell is not None and name_cell["width"] < PHONE["width"]
        assert_accessible(page, "contacts at 390 px")

        seen.focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(rf"/directory/kontakte/#kontakt-{changed.pk}$"))
        expect(row).to_be_focused()
        expect(row).to_contain_text("aktuell")
        expect(page.get_by_role("button", name=re.compile("^Gesehen"))).to_have_count(0)
        assert page.evaluate("() => window.scrollY") > 0  # at the row, not at the top of the list
        assert_no_horizontal_scroll(page)
        assert dialogs == []
    finally:
        context.close()
