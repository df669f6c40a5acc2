"""Who may scrape /metrics, decided from the address alone (no checks run here)."""

from __future__ import annotations

from django.test import RequestFactory

from operations.metrics import scrape_refusal


def refusal(settings, remote_addr: str, allow: list[str]) -> int | None:
    settings.KIMPORTAL_METRICS_TOKEN = ""
    settings.KIMPORTAL_METRICS_ALLOW = allow
    return scrape_refusal(RequestFactory().get("/metrics", REMOTE_ADDR=remote_addr))


def test_an_ipv4_client_seen_through_a_dual_stack_socket_matches_its_ipv4_network(settings):
    # gunicorn bound to [::]:8000 reports an IPv4 scraper as ::ffff:10.9.0.15.
    assert refusal(settings, "::ffff:10.9.0.15", ["10.9.0.0/24"]) is None
    assert refusal(settings, "::ffff:10.9.1.15", ["10.9.0.0/24"]) == 403


def test_ipv6_networks_and_garbage(settings):
    assert refusal(settings, "2001:db8::5", ["2001:db8::/64"]) is None
    assert refusal(settings, "2001:db9::5", ["2001:db8::/64"]) == 403
    assert refusal(settings, "", ["0.0.0.0/0", "::/0"]) == 403
    assert refusal(settings, "not an address", ["0.0.0.0/0"]) == 403
