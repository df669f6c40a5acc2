"""Page objects for the KIM administration pages (KIM-Konten, /betrieb/kim/)."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from tests.e2e.pages import SiteNav


class KimListPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    @classmethod
    def open_from_nav(cls, page: Page) -> KimListPage:
        nav = SiteNav(page)
        if nav.toggle.is_visible():  # folded below 1,100 px
            nav.toggle.click()
        nav.link("KIM-Konten").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("KIM-Konten beim Anbieter")
        return cls(page)

    def open_account(self, name: str) -> KimAccountPage:
        self.page.locator("#kim-accounts").get_by_role("link", name=name, exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_contain_text(name)
        return KimAccountPage(self.page)


class KimAccountPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.status = page.locator("#kim-status")
        self.out_of_office_summary = page.locator("#kim-ooo-summary")

    def open_out_of_office(self) -> KimOutOfOfficePage:
        self.page.get_by_role("link", name="Abwesenheitsnotiz bearbeiten").click()
        expect(self.page.get_by_role("heading", level=1)).to_contain_text("Abwesenheitsnotiz für")
        return KimOutOfOfficePage(self.page)


class KimOutOfOfficePage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.form = page.locator("#kim-ooo-form")
        self.active = self.form.get_by_label("Abwesenheitsnotiz aktiv")
        self.starts_at = self.form.get_by_label("Beginn")
        self.ends_at = self.form.get_by_label("Ende")
        self.text = self.form.get_by_label("Text der Abwesenheitsnotiz")
        self.submit = self.form.get_by_role("button", name="Abwesenheitsnotiz speichern")

    @property
    def error(self) -> Locator:
        return self.page.locator("#kim-error")

    def flash(self) -> Locator:
        return self.page.locator(".flash")
