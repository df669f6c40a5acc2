"""Page objects for the directory (VZD) search."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Locator, Page, expect


def _query(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("q", [""])[0]


class DirectorySearchPage:
    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    def login_and_open(self, username: str, password: str) -> DirectorySearchPage:
        self.page.goto(f"{self.base_url}/login/?next=/directory/")
        self.page.get_by_label("Benutzername").fill(username)
        self.page.get_by_label("Passwort").fill(password)
        self.page.get_by_role("button", name="Anmelden").click()
        expect(self.page.get_by_role("heading", name="Adressbuch (VZD)")).to_be_visible()
        return self

    @property
    def box(self) -> Locator:
        return self.page.locator("#vzd-q")

    @property
    def results(self) -> Locator:
        return self.page.locator("#results")

    @property
    def hits(self) -> Locator:
        return self.page.locator("#results [data-hit]")

    def hit(self, name: str) -> Locator:
        return self.hits.filter(has=self.page.locator(".vzd-name", has_text=name))

    def type_query(self, text: str) -> None:
        """Type like a user (key by key); return once the debounced search for the full text has answered."""
        self.box.fill("")
        self.box.click()
        with self.page.expect_response(lambda r: "/directory/?" in r.url and _query(r.url) == text):
            self.box.press_sequentially(text, delay=40)
        expect(self.results).to_have_attribute("data-q", text)

    def focused_hit_name(self) -> str:
        return self.page.evaluate(
            "() => { const el = document.activeElement; return el && el.matches('[data-hit]') "
            "? el.querySelector('.vzd-name').textContent.trim() : null }"
        )

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)
