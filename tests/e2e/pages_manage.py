"""Page objects for the managers' pages (Leitung)."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect


class ManageMailboxPage:
    """/leitung/postfaecher/<pk>/: the members of one mailbox and the form that grants a role."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.members = page.locator("#manage-members")

    def member_row(self, text: str) -> Locator:
        return self.members.locator("tbody tr", has_text=text)

    def grant(self, person: str, role: str) -> ManageMailboxPage:
        form = self.page.locator("#grant-form")
        form.get_by_label("Person", exact=True).select_option(label=person)
        form.get_by_label("Rolle", exact=True).select_option(label=role)
        form.get_by_role("button", name="Speichern").click()
        expect(self.page.locator(".flash")).to_contain_text("Mitgliedschaft gespeichert")
        return self


class ManageHomePage:
    def __init__(self, page: Page) -> None:
        self.page = page

    def open_mailbox(self, name: str) -> ManageMailboxPage:
        self.page.get_by_role("link", name="Postfächer und KIM-Konten").click()
        self.page.get_by_role("link", name=name, exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(name)
        return ManageMailboxPage(self.page)
