"""Page objects for the mailbox UI."""

from __future__ import annotations

import contextlib

from playwright.sync_api import APIResponse, Error, Locator, Page, Route, expect


def load_with_live_script_held(page: Page, url: str) -> Route:
    """Load `url` with the page's websocket script held: the page is rendered, its sockets cannot open yet (what the
    server does meanwhile reaches no socket of it). `.continue_()` on the returned route lets the page listen."""
    held: list[Route] = []
    page.route("**/vendor/htmx/ws.min.js", lambda route: held.append(route), times=1)
    page.goto(url, wait_until="commit")
    for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
        if held:
            break
        page.wait_for_timeout(10)
    assert len(held) == 1
    return held[0]


class LoginPage:
    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    def open(self) -> LoginPage:
        self.page.goto(f"{self.base_url}/login/")
        return self

    def login(self, username: str, password: str) -> InboxPage:
        self.page.get_by_label("Benutzername").fill(username)
        self.page.get_by_label("Passwort").fill(password)
        self.page.get_by_role("button", name="Anmelden").click()
        # Signed in once the next page has loaded: the click returns before that, and on a busy machine a test that
        # routes a script or navigates right away met the inbox page's own requests still under way (a held
        # websocket script of the inbox instead of the page the test opened next).
        self.page.wait_for_url(lambda url: "/login/" not in url, wait_until="load")
        return InboxPage(self.page)


class InboxPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    @property
    def rows(self) -> Locator:
        return self.page.locator(".msg-row")

    def row(self, subject: str) -> Locator:
        return self.rows.filter(has_text=subject)

    def wait_live(self) -> None:
        """The page marks itself live once its websocket is open (and shows it to the user)."""
        self.page.locator("body[data-live=open]").wait_for(state="attached")

    def open_message(self, subject: str) -> MessagePage:
        self.row(subject).click()
        expect(self.page.locator("#message-subject")).to_have_text(subject)
        return MessagePage(self.page)

    def open_mailbox(self, name: str) -> InboxPage:
        self.page.locator(".mailbox-nav").get_by_role("link", name=name).click()
        return self


class MessagePage:
    def __init__(self, page: Page) -> None:
        self.page = page

    @property
    def subject(self) -> Locator:
        return self.page.locator("#message-subject")

    @property
    def security(self) -> Locator:
        return self.page.locator("section.security")

    def attachment(self, filename: str) -> Locator:
        return self.page.locator(".attachments").get_by_role("link", name=filename)

    def back_to_mailbox(self) -> InboxPage:
        self.page.locator(".crumbs a").click()
        return InboxPage(self.page)


class WorkPanel:
    """The right-hand side of the detail page: read-lock, responsibility, notes."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.lock = page.locator("#lock-panel")
        self.actions = page.locator("#work-actions")
        self.error = page.locator("#work-error")
        self.state = page.locator("#work-state")
        self.stale_banner = page.locator("#stale-banner")

    def button(self, name: str) -> Locator:
        return self.page.locator("#work").get_by_role("button", name=name)

    def claim_button(self) -> Locator:
        return self.lock.get_by_role("button", name="Bearbeiten")


class SiteNav:
    """The header's navigation. Below 1,100 px it folds behind the menu button, together with the mailbox list."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.toggle = page.locator("#nav-toggle")
        self.menu = page.locator("#site-menu")
        self.sidebar = page.locator("#mailbox-sidebar")

    def link(self, name: str) -> Locator:
        return self.page.get_by_role("navigation", name="Hauptnavigation").get_by_role("link", name=name)

    def mailbox_link(self, name: str) -> Locator:
        return self.page.get_by_role("navigation", name="Postfächer").get_by_role("link", name=name)

    def open(self) -> SiteNav:
        expect(self.toggle).to_have_attribute("aria-expanded", "false")
        self.toggle.click()
        expect(self.toggle).to_have_attribute("aria-expanded", "true")
        return self

    def close(self) -> SiteNav:
        expect(self.toggle).to_have_attribute("aria-expanded", "true")
        self.toggle.click()
        expect(self.toggle).to_have_attribute("aria-expanded", "false")
        return self


def click_twice_while_the_first_is_answered(page: Page, button: Locator, url: str) -> None:
    """A double click as a busy server meets it: the first click's request has reached the server and been answered,
    the answer is not on the screen yet, and the second click lands on the same page. (Playwright's own dblclick
    sends both clicks before the browser starts the first request, and Chromium then sends one.)"""
    held: list[Route] = []
    answers: list[APIResponse] = []

    def hold(route: Route) -> None:
        held.append(route)
        answers.append(route.fetch(max_redirects=0))

    page.route(url, hold, times=1)
    # The mouse, not the locator: a locator's click waits for the page's navigation, which is held here until the end.
    button.scroll_into_view_if_needed()
    where = button.bounding_box()
    assert where is not None, f"{button} is not on the screen"
    x, y = where["x"] + where["width"] / 2, where["y"] + where["height"] / 2
    page.mouse.click(x, y)
    for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
        if answers:
            break
        page.wait_for_timeout(10)
    assert answers, f"the first click sent nothing to {url}"
    page.mouse.click(x, y)
    # The first answer arrives now; if the second click started a navigation of its own, the browser has dropped
    # the first one and shows the second's answer.
    with contextlib.suppress(Error):
        held[0].fulfill(response=answers[0])
