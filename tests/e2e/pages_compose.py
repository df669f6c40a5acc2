"""Page objects for the send path: compose (picker, typed addresses, attachments, send) and the sent message."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Locator, Page, Response, expect


class ComposePage:
    """A draft's page (/entwurf/<pk>/)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        # The heading is there while the page still parses; keys typed before compose.js runs would be lost.
        page.wait_for_load_state("load")
        self.form = page.locator("#draft-form")
        self.status = page.locator("#draft-status")
        self.problems = page.locator("#send-problems")
        self.attachments = page.locator("#attachments")

    @classmethod
    def start(cls, page: Page, base_url: str, mailbox_name: str) -> ComposePage:
        """ "Neue Nachricht" from the navigation, the mailbox chosen on the start page."""
        page.goto(f"{base_url}/")
        page.locator("#nav-compose").click()
        select = page.get_by_label("Senden aus dem Postfach")
        value = select.locator("option", has_text=mailbox_name).get_attribute("value")
        select.select_option(value=value)
        page.get_by_role("button", name="Nachricht verfassen").click()
        expect(page.locator("#compose-heading")).to_have_text("Neue Nachricht")
        return cls(page)

    def chips(self, field: str = "to") -> Locator:
        return self.page.locator(f"#{field}-chips .vzd-chip")

    def search_recipient(self, text: str, *, field: str = "to") -> Locator:
        """Type into the directory picker like a user; the hits once the search for the full text answered (on a
        busy machine the debounce lets a search for the first letters through too: that answer is not the one)."""
        box = self.page.locator(f"#{field}-picker-q")
        box.click()

        def full_text_answered(response: Response) -> bool:
            query = parse_qs(urlsplit(response.url).query).get("picker_q", [""])[0]
            return "/directory/auswahl/" in response.url and query == text

        with self.page.expect_response(full_text_answered):
            box.press_sequentially(text, delay=30)
        return self.page.locator(f"#{field}-picker-results [data-hit]")

    def pick(self, hit: Locator) -> None:
        hit.get_by_role("button", name="Auswählen").click()

    def type_address(self, address: str, *, field: str = "to") -> None:
        box = self.page.locator(f"#{field}-typed")
        box.fill(address)
        box.press("Enter")

    def fill(self, *, subject: str, body: str) -> None:
        self.page.get_by_label("Betreff").fill(subject)
        self.page.get_by_label("Nachricht", exact=True).fill(body)

    def wait_saved(self) -> None:
        """Leave the field (a change, so an autosave) and wait until a save was answered."""
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and re.search(r"/entwurf/\d+/$", r.url) is not None and r.ok
        ):
            self.page.keyboard.press("Tab")
        expect(self.status).to_contain_text("Entwurf gespeichert um")

    @property
    def restore_offer(self) -> Locator:
        """The offer of edits this tab kept that the server never confirmed (the session had ended)."""
        return self.page.locator("#draft-restore")

    def local_copies(self) -> list[str]:
        """The keys of unsaved draft edits this tab keeps in sessionStorage."""
        return list(
            self.page.evaluate("() => Object.keys(sessionStorage).filter((k) => k.startsWith('kim-draft-unsaved:'))")
        )

    def attach(self, path: Path) -> None:
        self.page.locator("#attachment-files").set_input_files(str(path))
        expect(self.attachments).to_contain_text(path.name)

    def send(self) -> SentPage:
        self.page.get_by_role("button", name="Senden", exact=True).click()
        self.page.wait_for_url(re.compile(r"/gesendet/\d+/$"))
        return SentPage(self.page)


class SentPage:
    """A sent message's page (/gesendet/<pk>/) with its delivery timeline."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.timeline = page.locator("section.timeline")
        self.state = page.locator("#outgoing-state")

    def recipient(self, address: str) -> Locator:
        return self.timeline.locator(f'tr[data-address="{address}"]')

    def wait_live(self) -> None:
        self.page.locator("body[data-live=open]").wait_for(state="attached")
