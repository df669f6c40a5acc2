"""Page objects for the signing queue: the physician's list, a draft with its document, the live batch page.

Element ids as docs/signing.md lists them ("For demo seeding, browser tests and the bench")."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

JOB_NUMBER = re.compile(r"^#[A-Z]{3}-[0-9]{3}$")


class SigningQueuePage:
    """/signatur/: the drafts the user is to sign, with multi-select and the sign form."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.list = page.locator("#draft-list")
        self.select_all = page.locator("#select-all")
        self.selection_count = page.locator("#selection-count")
        self.workplace = page.locator("#sign-workplace")
        self.sign_button = page.locator("#sign-button")

    @classmethod
    def open_from_nav(cls, page: Page) -> SigningQueuePage:
        page.get_by_role("navigation", name="Hauptnavigation").get_by_role("link", name="Signatur").click()
        expect(page.get_by_role("heading", name="Zu signieren", level=1)).to_be_visible()
        return cls(page).ready()

    @classmethod
    def arrived(cls, page: Page) -> SigningQueuePage:
        """After a link to the queue was followed."""
        expect(page.get_by_role("heading", name="Zu signieren", level=1)).to_be_visible()
        return cls(page).ready()

    def ready(self) -> SigningQueuePage:
        """The page's scripts have run (select all is wired) and its live socket is open: the heading shows
        before the deferred scripts run, and a box ticked then would be unticked by the page's first count."""
        self.page.wait_for_load_state("load")
        self.page.locator("body[data-live=open]").wait_for(state="attached")
        return self

    def row(self, draft_id: int) -> Locator:
        return self.page.locator(f"#draft-{draft_id}")

    def checkbox(self, draft_id: int) -> Locator:
        return self.page.locator(f"#select-{draft_id}")

    def open_draft(self, subject: str) -> DraftPage:
        self.list.get_by_role("link", name=subject, exact=True).click()
        expect(self.page.locator("#draft-subject")).to_have_text(subject)
        return DraftPage(self.page)

    def sign_selected(self, workplace_option: str) -> BatchPage:
        """Sign the checked drafts at the workstation whose option reads ``workplace_option``."""
        self.workplace.select_option(label=workplace_option)
        self.sign_button.click()
        expect(self.page.get_by_role("heading", name="Signaturvorgang", level=1)).to_be_visible()
        return BatchPage(self.page)


class DraftPage:
    """/signatur/entwurf/<pk>/: metadata and the document inline (pdf.js for PDFs)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.subject = page.locator("#draft-subject")
        self.state = page.locator("#draft-state")
        self.viewer = page.locator("#pdf-viewer")
        self.pages = page.locator("#pdf-viewer canvas.pdf-page")

    def wait_rendered(self) -> None:
        """pdf.js has drawn every page (the viewer marks itself once done)."""
        expect(self.page.locator('#pdf-viewer[data-rendered="1"]')).to_be_attached(timeout=20_000)

    def back_to_queue(self) -> SigningQueuePage:
        self.page.get_by_role("navigation", name="Signatur").get_by_role("link", name="Zu signieren").click()
        expect(self.page.get_by_role("heading", name="Zu signieren", level=1)).to_be_visible()
        return SigningQueuePage(self.page).ready()


class BatchPage:
    """/signatur/vorgaenge/<pk>/: job number, PIN prompt, progress, summary — updated over the socket."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.status = page.locator("#batch-status")
        self.job_number = page.locator("#job-number")
        self.pin_prompt = page.locator("#pin-prompt")
        self.calls = page.locator("#batch-calls")
        self.progress = page.locator("#batch-progress")
        self.counts = page.locator("#batch-counts")
        self.cancel = page.locator("#batch-cancel")
        self.summary = page.locator("#batch-summary")
        self.error = page.locator("#batch-error")
        self.count_signed = page.locator("#count-signed")
        self.count_failed = page.locator("#count-failed")
        self.count_not_signed = page.locator("#count-not-signed")

    @property
    def batch_id(self) -> int:
        match = re.search(r"/signatur/vorgaenge/(\d+)/", self.page.url)
        assert match, f"not a batch page: {self.page.url}"
        return int(match.group(1))

    def wait_live(self) -> None:
        self.page.locator("body[data-live=open]").wait_for(state="attached")

    def wait_for_pin_prompt(self, timeout: float = 30_000) -> str:
        """The job number the page shows once the Konnektor waits for the PIN (as the terminal shows it)."""
        expect(self.status).to_have_attribute("data-state", "pin", timeout=timeout)
        expect(self.job_number).to_have_text(JOB_NUMBER)
        return self.job_number.inner_text().strip()

    def item(self, item_id: int) -> Locator:
        return self.page.locator(f"#item-{item_id}")

    def item_for(self, draft_id: int) -> Locator:
        """The row of a draft (found by its link, which names the draft's page)."""
        return self.page.locator(f"tr[id^=item-]:has(a[href$='/entwurf/{draft_id}/'])")


class ReviewQueuePage:
    """/signatur/pruefen/: drafts waiting for the user's review (issue 12), approved together or one by one."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.list = page.locator("#review-list")
        self.approve_selected = page.locator("#review-approve-selected")

    @classmethod
    def open_from_nav(cls, page: Page) -> ReviewQueuePage:
        page.get_by_role("navigation", name="Signatur").get_by_role("link", name="Zur Prüfung").click()
        expect(page.get_by_role("heading", name="Zur Prüfung", level=1)).to_be_visible()
        return cls(page)

    def checkbox(self, draft_id: int) -> Locator:
        return self.page.locator(f"#review-select-{draft_id}")

    def open_draft(self, subject: str) -> ReviewDraftPage:
        self.list.get_by_role("link", name=subject, exact=True).click()
        expect(self.page.locator("#draft-subject")).to_have_text(subject)
        return ReviewDraftPage(self.page)


class ReviewDraftPage(DraftPage):
    """A draft with its review: the reviewer's panel (comment, approve, return), the author's view of the comment,
    the history of versions."""

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.review_state = page.locator("#draft-review-state")
        self.comment = page.locator("#review-form textarea")
        self.approve = page.locator("#review-approve")
        self.send_back = page.locator("#review-return")
        self.return_comment = page.locator("#return-comment")
        self.edit = page.get_by_role("link", name="Bearbeiten", exact=True)
        self.versions = page.locator("#versions-link")

    def return_with(self, comment: str) -> None:
        self.comment.fill(comment)
        self.send_back.click()
        expect(self.review_state).to_have_attribute("data-review", "returned")

    def approve_now(self) -> None:
        self.approve.click()
        expect(self.review_state).to_have_attribute("data-review", "approved")
