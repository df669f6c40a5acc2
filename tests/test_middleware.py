"""kimportal.middleware: at most N requests of one process run Django at once."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import RequestFactory
from django.urls import reverse

from kimportal.middleware import ConcurrencyLimitMiddleware


def test_no_more_than_the_limit_run_at_once_and_the_rest_wait_their_turn(settings):
    settings.KIMPORTAL_WEB_CONCURRENCY = 3
    inside, peak, done = [0], [0], []
    lock, release = threading.Lock(), threading.Event()

    def view(request):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        release.wait(timeout=10)
        with lock:
            inside[0] -= 1
        done.append(request.path)
        return "ok"

    middleware = ConcurrencyLimitMiddleware(view)
    threads = [threading.Thread(target=middleware, args=(RequestFactory().get(f"/r{i}"),)) for i in range(10)]
    for thread in threads:
        thread.start()
    # Wait (bounded) until the slots are full; the other seven must be waiting, not running.
    for _ in range(1000):
        with lock:
            if inside[0] == 3:
                break
        release.wait(timeout=0.005)
    assert inside[0] == 3
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert peak[0] == 3
    assert len(done) == 10


@pytest.mark.django_db
def test_a_signed_out_tabs_htmx_request_gets_the_login_page_as_a_whole_page(client):
    """The session ended in another tab: a click in this one (an htmx request) must not get the login form swapped
    into the fragment it asked for (htmx follows a redirect), but the whole login page, and back afterwards."""
    inbox, login = reverse("mailbox:inbox"), resolve_url(settings.LOGIN_URL)
    page = "http://testserver/postfach/7/?status=offen"
    response = client.post(inbox, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=page)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{login}?next=%2Fpostfach%2F7%2F%3Fstatus%3Doffen"
    assert b"<form" not in response.content
    # A forged page address of another site is not where the login leads back to.
    response = client.get(inbox, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/postfach/7/")
    assert response["HX-Redirect"] == login
    # A plain request is redirected as before, back to what it asked for.
    response = client.get(inbox)
    assert response.status_code == 302 and response["Location"] == f"{login}?next={inbox}"
