"""A signing list rendered before its socket listened: a draft that arrives in between was announced to nobody, so
the page compares its list with the current one once the socket is open and offers the reload.

The gap is made exact: the server renders the page, then the draft is created (its live event goes out while no
socket of the page listens), and only then may the page open its socket."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from playwright.sync_api import Page, Route, expect

from mailbox.models import Membership
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.review import review_rule_set
from tests.e2e.conftest import PortalStack
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory

pytestmark = pytest.mark.e2e

LETTER = "Sehr geehrte Kollegin,\nwir berichten über Frau Weiß.\nMit freundlichen Grüßen\n".encode()


@pytest.fixture
def ward(transactional_db) -> dict:
    cardio = MailboxFactory(display_name="Station Kardiologie", address="kardiologie@klinikum-demo.kim.telematik-test")
    station = UserFactory(username="station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    for user in (station, aerztin):
        MembershipFactory(mailbox=cardio, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    aerztin.user_permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    WorkplaceFactory()
    return {"mailbox": cardio, "station": station, "aerztin": aerztin}


def _new_letter(ward: dict, document_type: str = "earztbrief") -> None:
    draft_create(
        author=ward["station"],
        data=DraftData(
            document_type=document_type,
            patient_reference="Weiß, Gertrud",
            signer=ward["aerztin"],
            mailbox=ward["mailbox"],
            subject="Entlassbrief Weiß",
            recipients=["praxis.mueller@praxis-mueller.kim.telematik-test"],
        ),
        document=document_check(LETTER, "Entlassbrief Weiß.txt"),
    )


def _open_rendered_before(page: Page, portal: PortalStack, path: str, change: Callable[[], None]) -> None:
    """Open ``path`` as the server rendered it before ``change`` committed; the page's socket opens only after.

    The page asks for the websocket script once the server has rendered it, and cannot open its socket before it
    has the script: the change is made then. (A page fulfilled by the test instead of the server would count as
    not local, and Chromium would refuse its socket to 127.0.0.1.)"""

    def change_then_load(route: Route) -> None:
        try:
            change()
        finally:
            # Playwright runs this handler in a context of its own, where Django opened a connection of its own: one
            # left open would keep the test database from being dropped at the end of the run.
            connection.close()
        route.continue_()

    page.route("**/vendor/htmx/ws.min.js", change_then_load, times=1)
    page.goto(f"{portal.url}{path}")
    page.locator("body[data-live=open]").wait_for(state="attached")


def test_queue_rendered_before_a_new_letter_offers_the_reload(portal_web, page, ward):
    LoginPage(page, portal_web.url).open().login("aerztin", "pw-secret-123")
    _open_rendered_before(page, portal_web, "/signatur/", lambda: _new_letter(ward))
    expect(page.locator("#draft-list")).to_contain_text("Keine Entwürfe zu signieren.")

    notice = page.locator("#queue-notice")
    expect(notice).to_contain_text("Entwürfe in dieser Liste haben sich geändert.")
    notice.get_by_role("link", name="Liste aktualisieren").click()
    expect(page.locator("#draft-list")).to_contain_text("Entlassbrief Weiß")
    expect(notice).to_be_empty()


def test_review_list_rendered_before_a_letter_to_review_offers_the_reload(portal_web, page, ward):
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(codename="manage_house"))
    review_rule_set(manager=leitung, mailbox=ward["mailbox"], document_type="earztbrief", required=True)
    LoginPage(page, portal_web.url).open().login("aerztin", "pw-secret-123")
    _open_rendered_before(page, portal_web, "/signatur/pruefen/", lambda: _new_letter(ward))
    expect(page.get_by_role("heading", name="Zur Prüfung", level=1)).to_be_visible()
    expect(page.locator("#review-list")).to_have_count(0)

    notice = page.locator("#queue-notice")
    expect(notice).to_contain_text("Entwürfe in dieser Liste haben sich geändert.")
    notice.get_by_role("link", name="Liste aktualisieren").click()
    expect(page.locator("#review-list")).to_contain_text("Entlassbrief Weiß")


def test_queue_unchanged_since_rendered_shows_no_notice(portal_web, page, ward):
    """The check compares what the page shows: a list that did not change gets no notice (and a live event after the
    socket opened still brings its own)."""
    _new_letter(ward)
    LoginPage(page, portal_web.url).open().login("aerztin", "pw-secret-123")
    page.goto(f"{portal_web.url}/signatur/")
    notice = page.locator("#queue-notice")
    expect(notice).to_have_attribute("data-compared", "1")
    expect(notice).to_be_empty()

    _new_letter(ward, document_type="earztbrief")
    expect(notice).to_contain_text("wartet neu oder geändert auf Ihre Signatur")


def test_the_lists_re_read_does_not_count_as_the_users_activity(portal_web, page, ward):
    """The re-read on the socket's opening is the page's, not the user's: it carries the background header, so the
    idle logout still comes (a reconnect after every server restart would otherwise keep an unattended PC signed in)."""
    LoginPage(page, portal_web.url).open().login("aerztin", "pw-secret-123")
    reads: list[dict[str, str]] = []
    queue = f"{portal_web.url}/signatur/"
    page.on(
        "request",
        lambda request: (
            reads.append(request.headers) if request.url == queue and "hx-request" in request.headers else None
        ),
    )
    page.goto(queue)
    expect(page.locator("#queue-notice")).to_have_attribute("data-compared", "1")
    assert reads and all(headers.get("x-portal-background") == "1" for headers in reads)
