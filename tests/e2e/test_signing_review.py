"""Review before signature in the browser: the resident's eArztbrief waits for the senior's review; she sends it
back with a comment, the resident sees it live, revises it, and the senior compares the versions and approves
— after which the letter is selectable for signing. axe-clean at phone (390 px) and tablet (820 px) width."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from signing.models import Draft, ReviewStep
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.review import review_rule_set
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, screenshot
from tests.e2e.pages import LoginPage
from tests.e2e.pages_signing import ReviewDraftPage, ReviewQueuePage, SigningQueuePage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory

pytestmark = pytest.mark.e2e

LETTER = (
    "Sehr geehrte Frau Kollegin,\n"
    "wir berichten über Herrn Müller, stationär vom 3. bis 9. November.\n"
    "Diagnose: Vorhofflimmern\n"
    "Mit freundlichen Grüßen\n"
).encode()
REVISED = LETTER.replace(b"Diagnose: Vorhofflimmern\n", b"Diagnose: Vorhofflimmern\nMedikation: Apixaban 5 mg 1-0-1\n")


@pytest.fixture
def review_setup(transactional_db):
    cardio = MailboxFactory(display_name="Station Kardiologie", address="kardiologie@klinikum-demo.kim.telematik-test")
    assistenz = UserFactory(username="assistenz", first_name="Jonas", last_name="Neumann")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(codename="manage_house"))
    for user in (assistenz, aerztin):
        MembershipFactory(mailbox=cardio, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    aerztin.user_permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    WorkplaceFactory()
    review_rule_set(manager=leitung, mailbox=cardio, document_type="earztbrief", required=True)
    draft = draft_create(
        author=assistenz,
        data=DraftData(
            document_type="earztbrief",
            patient_reference="Müller, Jürgen",
            signer=aerztin,
            mailbox=cardio,
            subject="Entlassbrief Müller",
            recipients=["praxis.mueller@praxis-mueller.kim.telematik-test"],
        ),
        document=document_check(LETTER, "Entlassbrief Müller.txt"),
    )
    assert draft.review_state == Draft.Review.PENDING and draft.reviewer_id == aerztin.pk
    return draft


def _accessible_at_both_widths(page: Page, what: str) -> None:
    for viewport in (PHONE, TABLET):
        page.set_viewport_size(viewport)
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"{what} at {viewport['width']} px")
        screenshot(page, f"signing-review-{what}-{viewport['width']}")
    page.set_viewport_size(DESKTOP)


def test_senior_returns_with_a_comment_author_revises_senior_approves(portal_web, browser, review_setup, tmp_path):
    draft = review_setup
    senior_ctx, author_ctx = browser.new_context(locale="de-DE"), browser.new_context(locale="de-DE")
    try:
        senior, author = senior_ctx.new_page(), author_ctx.new_page()
        for p in (senior, author):
            p.set_default_timeout(10_000)
            p.set_viewport_size(DESKTOP)

        # The author waits on the list of all drafts (its socket brings the bell and the change notice).
        LoginPage(author, portal_web.url).open().login("assistenz", "pw-secret-123")
        SigningQueuePage.open_from_nav(author)
        author.get_by_role("navigation", name="Signatur").get_by_role("link", name="Alle Entwürfe").click()
        expect(author.locator(f"#draft-{draft.pk} [data-review]")).to_have_text("in Prüfung")
        author.locator("body[data-live=open]").wait_for(state="attached")

        # The senior finds the letter on her review list, reads it and sends it back with a comment.
        LoginPage(senior, portal_web.url).open().login("aerztin", "pw-secret-123")
        SigningQueuePage.open_from_nav(senior)
        expect(senior.locator("#review-waiting")).to_contain_text("1 Entwurf wartet auf Ihre Prüfung")
        reviews = ReviewQueuePage.open_from_nav(senior)
        expect(reviews.checkbox(draft.pk)).to_be_visible()
        _accessible_at_both_widths(senior, "queue")
        letter = reviews.open_draft("Entlassbrief Müller")
        expect(senior.locator("#document-text")).to_contain_text("Diagnose: Vorhofflimmern")
        expect(senior.locator("#sign-refusal")).to_contain_text("In Prüfung")
        _accessible_at_both_widths(senior, "draft")
        letter.return_with("Bitte die Entlassmedikation ergänzen.")
        expect(letter.return_comment).to_contain_text("Bitte die Entlassmedikation ergänzen.")

        # The author learns of it without reloading: the bell counts it, the list says it changed.
        expect(author.locator("#notification-badge .count")).to_have_text("1")
        expect(author.locator("#queue-notice")).to_contain_text("geändert")
        author.locator("#queue-reload").click()
        expect(author.locator(f"#draft-{draft.pk} [data-review]")).to_have_text("zurückgegeben")
        author.get_by_role("link", name="Entlassbrief Müller", exact=True).click()
        mine = ReviewDraftPage(author)
        expect(mine.return_comment).to_contain_text("Bitte die Entlassmedikation ergänzen.")
        expect(mine.approve).to_have_count(0)
        _accessible_at_both_widths(author, "returned")

        # The author revises the letter: a new version, in review again.
        mine.edit.click()
        expect(author.locator("#review-again")).to_be_visible()
        revised = tmp_path / "Entlassbrief Müller.txt"
        revised.write_bytes(REVISED)
        author.locator("#id_document").set_input_files(str(revised))
        author.locator("#id_comment").fill("Medikation ergänzt")
        _accessible_at_both_widths(author, "edit")
        author.get_by_role("button", name="Speichern").click()
        expect(mine.review_state).to_have_attribute("data-review", "pending")
        expect(author.locator("#return-comment")).to_have_count(0)

        # The senior compares the versions and approves the revised one.
        reviews = ReviewQueuePage.open_from_nav(senior)
        letter = reviews.open_draft("Entlassbrief Müller")
        expect(senior.locator("#document-text")).to_contain_text("Apixaban")
        letter.versions.click()
        expect(senior.locator("#version-2")).to_contain_text("Medikation ergänzt")
        senior.locator("#compare-submit").click()
        diff = senior.locator("#text-diff")
        expect(diff.locator("ins")).to_contain_text("Medikation: Apixaban 5 mg 1-0-1")
        expect(diff.locator("del")).to_have_count(0)
        _accessible_at_both_widths(senior, "compare")
        senior.get_by_role("link", name="Zum Entwurf").click()
        letter = ReviewDraftPage(senior)
        letter.approve_now()

        # Approved at version 2: now it is selectable for signing.
        queue = SigningQueuePage.open_from_nav(senior)
        expect(queue.checkbox(draft.pk)).to_be_visible()
        expect(queue.row(draft.pk).locator("[data-review]")).to_have_text("freigegeben")
        _accessible_at_both_widths(senior, "signable")
        fresh = Draft.objects.get(pk=draft.pk)
        assert (fresh.version, fresh.review_state, fresh.approved_version) == (2, "approved", 2)
        steps = list(ReviewStep.objects.filter(draft=draft).values_list("action", "version"))
        assert steps == [("requested", 1), ("returned", 1), ("requested", 2), ("approved", 2)]
    finally:
        senior_ctx.close()
        author_ctx.close()


def test_managers_page_for_rules_is_accessible(portal_web, page, review_setup):
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")
    page.goto(f"{portal_web.url}/signatur/verwaltung/pruefregeln/")
    expect(page.get_by_role("heading", name="Prüfregeln", level=1)).to_be_visible()
    expect(page.locator("#rule-list")).to_contain_text("Station Kardiologie")
    _accessible_at_both_widths(page, "rules")
