"""Browser test: a ward secretary finds "Praxis Dr. Müller" by typing "müller" and walks the results by keyboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.directory.conftest import vzd, vzd_server  # noqa: F401  (fixtures: the real slapd)
from tisim.vzd.slapd import free_port

from .pages_directory import DirectorySearchPage

PASSWORD = "kim-portal-e2e-pw"


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd")
def test_find_praxis_mueller_and_navigate_by_keyboard(
    page,
    live_server,
    transactional_db,
    settings,
    django_user_model,
):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)

    search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
    expect(search.box).to_be_focused()
    search.type_query("müller")

    praxis = search.hit("Praxis Dr. Müller")
    expect(praxis).to_have_count(1)
    expect(praxis).to_contain_text("praxis.mueller@praxis-mueller.kim.telematik-test")
    expect(praxis).to_contain_text("KIM 1.5+")
    expect(praxis).to_contain_text("Zertifikat formal gültig")
    expect(praxis).to_contain_text("Allgemeinmedizin")
    expect(search.results).to_contain_text("mehr als 100 Treffer – bitte Suche eingrenzen")
    names = search.hits.locator(".vzd-name").all_text_contents()
    assert names[0] == "Praxis Dr. Müller"

    # Arrow keys move through the results, focus is visible, Enter opens the details, ArrowUp returns to the box.
    search.press("ArrowDown")
    assert search.focused_hit_name() == names[0]
    search.press("ArrowDown")
    assert search.focused_hit_name() == names[1]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    search.press("ArrowUp")
    assert search.focused_hit_name() == names[0]
    search.press("Enter")
    expect(praxis.locator("details")).to_have_attribute("open", "")
    expect(praxis).to_contain_text("1-200000000000004711")
    search.press("ArrowUp")
    expect(search.box).to_be_focused()

    # The directory goes away: the same page says so in German instead of failing.
    settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
    search.type_query("müller praxis")
    expect(search.results.locator("[data-vzd-error]")).to_have_text(
        "Das Verzeichnis (VZD) ist nicht erreichbar. Bitte versuchen Sie es später noch einmal."
    )
    assert violations == []


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd")
def test_favorite_by_keyboard_keeps_the_focus_on_its_button(page, live_server, transactional_db, django_user_model):
    # The toggle swaps its whole form: without a stable id htmx cannot put the focus back, it fell to the page's
    # start and a keyboard user had to tab through the navigation again.
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
    search.type_query("müller")
    praxis = search.hit("Praxis Dr. Müller")
    expect(praxis).to_have_count(1)

    search.press("ArrowDown")
    assert search.focused_hit_name() == "Praxis Dr. Müller"
    search.press("Tab")
    remember = praxis.get_by_role("button", name="Als Favorit merken")
    expect(remember).to_be_focused()
    # htmx puts the focus on the new button at once; it binds the new form when the swap settles. Between the two
    # an Enter went out as a plain form post (a 405 page in CI): the portal settles in the same task as the swap.
    page.evaluate(
        """() => {
          window.unboundFocus = [];
          document.addEventListener("htmx:afterSwap", () => queueMicrotask(() => {
            const form = document.activeElement && document.activeElement.closest("form");
            window.unboundFocus.push(Boolean(form && form.classList.contains("htmx-added")));
          }));
        }"""
    )
    search.press("Enter")
    favorite = praxis.get_by_role("button", name="Favorit")
    expect(favorite).to_have_attribute("aria-pressed", "true")
    expect(favorite).to_be_focused()
    search.press("Enter")
    expect(remember).to_have_attribute("aria-pressed", "false")
    expect(remember).to_be_focused()
    assert page.evaluate("window.unboundFocus") == [False, False]
