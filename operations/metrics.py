"""/metrics for Prometheus: the operations report (cached, see operations.services.health) as gauges.

A collector over one report, rendered with prometheus_client into the text exposition format, in a registry of
its own: the process-wide default registry would count per web worker and per process (gunicorn runs several),
while everything here is the installation's state, the same whichever worker answers.

Request and socket counts come from kimportal.requestmetrics, summed over the server's worker processes
(prometheus_client's multiprocess mode, set up by deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kimportal import requestmetrics
from operations.services.results import ERROR, OK, UNKNOWN, WARNING, Report

log = logging.getLogger(__name__)

STATES = (OK, WARNING, ERROR, UNKNOWN)


class ReportCollector(Collector):
    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        report = self.report
        up = GaugeMetricFamily(
            "kimportal_component_up",
            "1: the component works (ok or warning); 0: error or not checkable",
            labels=["component"],
        )
        state = StateSetMetricFamily("kimportal_component_state", "The component's state", labels=["component"])
        for component in report.components:
            up.add_metric([component.key], 1.0 if component.state in (OK, WARNING) else 0.0)
            state.add_metric([component.key], {name: component.state == name for name in STATES})
        yield up
        yield state

        login = GaugeMetricFamily("kimportal_cm_login_up", "1: the POP3 login test succeeded", labels=["account"])
        fetch_age = GaugeMetricFamily(
            "kimportal_fetch_age_seconds", "Seconds since the last successful fetch", labels=["account"]
        )
        fetch_last = GaugeMetricFamily(
            "kimportal_fetch_last_success_timestamp_seconds", "Time of the last successful fetch", labels=["account"]
        )
        outbox = GaugeMetricFamily(
            "kimportal_outbox_messages",
            "Outbox depth: waiting (queued or sending), failed in the last 24 hours, delivery uncertain, held (the"
            " mailbox or account is switched off)",
            labels=["account", "state"],
        )
        outbox_wait = GaugeMetricFamily(
            "kimportal_outbox_oldest_wait_seconds", "Seconds the oldest waiting message has waited", labels=["account"]
        )
        signing = GaugeMetricFamily(
            "kimportal_signing_queue_drafts",
            "Drafts of the mailbox: open (to sign), signing, signed (waiting for the outbox)",
            labels=["account", "state"],
        )
        for account in report.accounts:
            # Held mail lies mostly with switched-off accounts: counted for every account.
            outbox.add_metric([account.address, "held"], account.outbox_held)
            if not account.active:
                continue
            label = [account.address]
            login.add_metric(label, 1.0 if account.login_state == OK else 0.0)
            if account.fetch_age is not None:
                fetch_age.add_metric(label, account.fetch_age)
            if account.last_success_at is not None:
                fetch_last.add_metric(label, account.last_success_at)
            outbox.add_metric([account.address, "waiting"], account.outbox_waiting)
            outbox.add_metric([account.address, "failed_24h"], account.outbox_failed)
            outbox.add_metric([account.address, "uncertain"], account.outbox_uncertain)
            outbox_wait.add_metric(label, account.outbox_oldest_wait or 0.0)
            signing.add_metric([account.address, "open"], account.signing_open)
            signing.add_metric([account.address, "signing"], account.signing_running)
            signing.add_metric([account.address, "signed"], account.signing_signed)
        for address, held in report.held_elsewhere.items():  # switched-off mailboxes
            outbox.add_metric([address, "held"], held)
        yield from (login, fetch_age, fetch_last, outbox, outbox_wait, signing)

        days = GaugeMetricFamily(
            "kimportal_certificate_days_left",
            "Days until the certificate ends (negative: ended)",
            labels=["kind", "certificate"],
        )
        expiry = GaugeMetricFamily(
            "kimportal_certificate_expiry_timestamp_seconds", "End of validity", labels=["kind", "certificate"]
        )
        for certificate in report.certificates:
            if certificate.days_left is None or certificate.not_after is None:
                continue
            days.add_metric([certificate.kind, certificate.ident], certificate.days_left)
            expiry.add_metric([certificate.kind, certificate.ident], certificate.not_after)
        yield days
        yield expiry

        cards = GaugeMetricFamily("kimportal_cards_present", "Cards the Konnektor shows", labels=["type"])
        counts: dict[str, int] = {}
        for card in report.cards:
            counts[card.card_type] = counts.get(card.card_type, 0) + 1
        for card_type, count in sorted(counts.items()):
            cards.add_metric([card_type], count)
        yield cards
        if report.konnektor_version:
            info = InfoMetricFamily("kimportal_konnektor", "The Konnektor's product (connector.sds)")
            info.add_metric([], {"product": report.konnektor_product, "version": report.konnektor_version})
            yield info

        heartbeat = GaugeMetricFamily(
            "kimportal_celery_heartbeat_age_seconds", "Seconds since the last heartbeat stamp", labels=["process"]
        )
        if report.beat_age is not None:
            heartbeat.add_metric(["beat"], report.beat_age)
        if report.worker_age is not None:
            heartbeat.add_metric(["worker"], report.worker_age)
        yield heartbeat
        yield GaugeMetricFamily(
            "kimportal_health_check_timestamp_seconds", "When the reported round of checks ran", value=report.checked_at
        )
        yield GaugeMetricFamily(
            "kimportal_health_check_duration_seconds", "How long the round of checks took", value=report.duration
        )


def render(report: Report) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    requestmetrics.register(registry)
    return generate_latest(registry)


# --- who may scrape -----------------------------------------------------------------------------------------


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in settings.KIMPORTAL_METRICS_ALLOW:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            log.error("KIMPORTAL_METRICS_ALLOW: %r is neither an address nor a network; ignored", entry)
    return networks


def client_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """REMOTE_ADDR (behind nginx the ASGI server put the browser's address there, see docs/deploy.md). A server
    listening on "[::]" sees IPv4 clients as ::ffff:a.b.c.d: that is the IPv4 address, for the allow-list's
    IPv4 networks (an IPv6 address is never "in" an IPv4 network)."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def scrape_refusal(request: HttpRequest) -> int | None:
    """None if the request may read /metrics; else the status to answer (401: a token would help, 403: no)."""
    token = settings.KIMPORTAL_METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
    address = client_address(request)
    if address is not None and any(address in network for network in _networks()):
        return None
    return 401 if token else 403
