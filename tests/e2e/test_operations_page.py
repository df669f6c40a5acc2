# ruff: noqa: F811 - the fixtures imported from tests.operations.conftest are parameters of the tests
"""The operations page in a real browser against the real stack: gunicorn (uvicorn workers), a Celery worker with
beat (the heartbeat), PostgreSQL, Redis, the simulated Konnektor and Clientmodul and a real slapd.

IT (a superuser) signs in, opens *Betrieb* from the navigation and sees every component green; the Konnektor is
stopped and the page, polling by itself, turns it red with the German explanation; /health/ says 503 naming it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from operations.services import heartbeat
from signing.models import Workplace
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, TABLET, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage, SiteNav
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.mailbox.factories import UserFactory
from tests.operations.conftest import (  # noqa: F401 - fixtures
    SMCB_HOLDER,
    SMCB_TELEMATIK_ID,
    cm_factory,
    fresh_store,
    kim_account,
    slapd,
)

pytestmark = pytest.mark.e2e


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/health/", timeout=30) as response:  # noqa: S310 - our own test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_it_sees_everything_green_and_a_stopped_konnektor_turn_red(
    transactional_db,
    tmp_path,
    page,
    konnektor_sim,
    cm_factory,
    slapd,
    fresh_store,
):
    konnektor_sim.add_smcb(SMCB_HOLDER, SMCB_TELEMATIK_ID)
    Workplace.objects.create(workplace_id=WORKPLACE, label="Station 3, Arztzimmer", ct_id="CT-1")
    kim_account(cm_factory())
    UserFactory(username="admin", first_name="Ingo", last_name="IT", is_staff=True, is_superuser=True)
    stack = PortalStack(
        tmp_path,
        with_worker=True,
        extra_env={
            "KIMPORTAL_KONNEKTOR_URL": konnektor_sim.base_url,
            "KIMPORTAL_KONNEKTOR_MODE": "plain",
            "KIMPORTAL_KONNEKTOR_MANDANT": MANDANT,
            "KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM": CLIENT_SYSTEM,
            "KIMPORTAL_VZD_URL": slapd.url,
            # Short periods so that the test waits seconds, not the production quarter minute.
            "KIMPORTAL_HEARTBEAT_SECONDS": "2",
            "KIMPORTAL_HEALTH_CACHE_SECONDS": "2",
            "KIMPORTAL_HEALTH_TIMEOUT": "3",
        },
    )
    try:
        stack.start()
        # Beat publishes and the worker runs the heartbeat: both stamps appear in Redis.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beat, worker = heartbeat.read_stamps()
            if beat.at is not None and worker.at is not None:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no heartbeat from beat and worker: {stack.logs()}")

        page.set_default_navigation_timeout(30_000)
        LoginPage(page, stack.url).open().login("admin", "pw-secret-123")
        page.set_viewport_size({"width": 1280, "height": 900})
        SiteNav(page).link("Betrieb").click()
        expect(page.get_by_role("heading", level=1, name="Betrieb")).to_be_visible()
        summary = page.locator(".ops-summary")
        expect(summary).to_contain_text("Alle Komponenten in Ordnung.", timeout=30_000)
        for key in ("konnektor", "cards", "certificates", "directory", "clientmodul", "fetch", "celery_beat"):
            expect(page.locator(f'[data-component="{key}"] .ops-badge')).to_have_text("in Ordnung")
        for viewport in (PHONE, TABLET):
            page.set_viewport_size(viewport)
            assert_accessible(page, f"the operations page at {viewport['width']} px")
            assert_no_horizontal_scroll(page)
        assert health(stack.url)[0] == 200

        konnektor_sim.stop()
        # No click: the page polls by itself and shows the Konnektor red with the reason.
        konnektor = page.locator('[data-component="konnektor"]')
        expect(konnektor.locator(".ops-badge")).to_have_text("Störung", timeout=40_000)
        expect(konnektor).to_contain_text("Konnektor nicht erreichbar")
        expect(summary).to_contain_text("Aufmerksamkeit")
        assert_accessible(page, "the operations page with a red component")
        status, body = health(stack.url)
        assert status == 503 and "konnektor" in body["failing"], body
    finally:
        stack.stop()


def test_a_ward_user_sees_no_betrieb_and_gets_403(transactional_db, tmp_path, page):
    UserFactory(username="station")
    stack = PortalStack(tmp_path, with_worker=False)
    try:
        stack.start()
        # A freshly started server's first page may take a while on a busy machine.
        page.set_default_navigation_timeout(30_000)
        LoginPage(page, stack.url).open().login("station", "pw-secret-123")
        page.set_viewport_size({"width": 1280, "height": 900})
        expect(SiteNav(page).link("Posteingang")).to_be_visible()
        expect(SiteNav(page).link("Betrieb")).to_have_count(0)
        response = page.goto(stack.url + "/betrieb/")
        assert response is not None and response.status == 403
    finally:
        stack.stop()


def test_an_open_page_of_someone_who_lost_the_permission_turns_into_the_403(transactional_db, tmp_path, page):
    """htmx swaps no 403: without a reload the last report would stay on an ex-IT user's screen, frozen."""
    from django.contrib.auth.models import Permission

    permission = Permission.objects.get(content_type__app_label="operations", codename="view_operations")
    it = UserFactory(username="it", is_staff=True)
    it.user_permissions.add(permission)
    stack = PortalStack(tmp_path, with_worker=False, extra_env={"KIMPORTAL_HEALTH_TIMEOUT": "1"})
    try:
        stack.start()
        page.set_default_navigation_timeout(30_000)
        LoginPage(page, stack.url).open().login("it", "pw-secret-123")
        page.goto(stack.url + "/betrieb/")
        check = page.get_by_role("button", name="Jetzt prüfen")
        expect(check).to_be_visible(timeout=30_000)
        it.user_permissions.remove(permission)
        check.focus()
        page.keyboard.press("Enter")
        heading = page.get_by_role("heading", level=1)
        expect(heading).to_have_text("Diese Aktion ist Ihnen nicht erlaubt", timeout=30_000)
        expect(check).to_have_count(0)
    finally:
        stack.stop()
