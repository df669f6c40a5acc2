"""Callbacks to the client systems: each change of a KIS draft's state, review state or version that the client
did not already get in an API response is announced by an HTTP POST to the client's callback URL.

The sweep compares each open KIS draft with what was last announced (state changes happen in many services,
several of them by queryset updates: comparing is the one way to miss none) and records a KisCallback row per
change in the same transaction; a Celery task delivers each row, signed with HMAC-SHA256, and a failed delivery
is retried with exponential backoff until it is given up. The body carries ids and states only, never patient
data: the client reads the rest with its token (GET /drafts/{document_id})."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from kimportal.texts import N_, StoredText
from mailbox.crypto import CredentialDecryptionError, decrypt
from signing.api.services import FINAL_STATES
from signing.models import KisCallback, KisDraft

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-KIM-Portal-Signature"
EVENT = "draft.changed"


def retry_base_seconds() -> float:
    return float(getattr(settings, "KIMPORTAL_KIS_CALLBACK_RETRY_SECONDS", 30.0))


def max_attempts() -> int:
    return int(getattr(settings, "KIMPORTAL_KIS_CALLBACK_MAX_ATTEMPTS", 10))


def timeout_seconds() -> float:
    return float(getattr(settings, "KIMPORTAL_KIS_CALLBACK_TIMEOUT", 10.0))


def loopback_allowed() -> bool:
    """Callbacks to the portal's own host (127.0.0.1, ::1): off unless a test or a one-host demo turns it on."""
    return bool(getattr(settings, "KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK", False))


def address_allowed(address: str) -> bool:
    """Whether a callback may be posted to this peer address. The hospital's own networks (private ranges) are
    where a KIS lives and stay open; never link-local (169.254.169.254 is a cloud's metadata service), multicast,
    unspecified or reserved addresses, nor the portal's own host (its Redis, PostgreSQL, admin ports) unless
    allowed."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    return loopback_allowed() or not ip.is_loopback


class AddressRefused(OSError):
    """The callback URL's host resolved to an address callbacks may not go to."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


def _checked_connection(address: tuple[str, int], timeout: Any, source_address: Any = None) -> socket.socket:
    """A TCP connection whose peer is checked before a byte is sent (TLS included): the address actually
    connected to counts, so a name that resolves to another address on the second lookup changes nothing."""
    sock = socket.create_connection(address, timeout, source_address)
    peer = str(sock.getpeername()[0])
    if not address_allowed(peer):
        sock.close()
        raise AddressRefused(peer)
    return sock


def backoff(attempts: int) -> timedelta:
    """The pause after the n-th failed attempt: doubling from the base, at most an hour."""
    return timedelta(seconds=min(retry_base_seconds() * 2 ** max(attempts - 1, 0), 3600.0))


def payload_for(link: KisDraft, *, sequence: int) -> dict[str, Any]:
    draft = link.draft
    return {
        "event": EVENT,
        "sequence": sequence,
        "document_id": link.document_id,
        "draft_id": draft.pk,
        "version": draft.version,
        "state": draft.state,
        "review_state": draft.review_state,
        "occurred_at": timezone.now().isoformat(),
    }


# --- the sweep: changes become callback rows -----------------------------------------------------------------------

SWEEP_BATCH = 500


def callbacks_sweep() -> list[int]:
    """Record a callback for every open KIS draft whose state, review state or version differs from what was last
    announced; the ids of the new callbacks (the caller dispatches them with the due ones). Two sweeps at once
    skip each other's rows."""
    changed = ~Q(draft__state=F("announced_state")) | ~Q(draft__review_state=F("announced_review"))
    changed |= ~Q(draft__version=F("announced_version"))
    created: list[int] = []
    with transaction.atomic():
        links = list(
            KisDraft.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("draft", "client")
            .filter(finished=False)
            .filter(changed)
            .order_by("pk")[:SWEEP_BATCH]
        )
        for link in links:
            draft = link.draft
            link.announced_state, link.announced_review, link.announced_version = (
                draft.state,
                draft.review_state,
                draft.version,
            )
            link.finished = draft.state in FINAL_STATES
            link.save(update_fields=["announced_state", "announced_review", "announced_version", "finished"])
            if not link.client.callback_url or not link.client.is_active:
                continue
            callback = KisCallback.objects.create(client=link.client, link=link, payload={})
            # The row's id is the sequence: a client that gets two callbacks out of order keeps the higher one.
            callback.payload = payload_for(link, sequence=callback.pk)
            callback.save(update_fields=["payload"])
            created.append(callback.pk)
    return created


def callbacks_due() -> list[int]:
    """Callbacks whose (next) attempt is due, for the beat's dispatcher."""
    now = timezone.now()
    return list(
        KisCallback.objects.filter(state=KisCallback.State.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


# --- delivery ------------------------------------------------------------------------------------------------------


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 over "<t>." + body>``: the time inside the MAC lets the client refuse
    a replayed callback."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    # Kept untranslated (kimportal.texts): the connection's page shows it in the reader's language.
    error: StoredText = field(default_factory=lambda: StoredText([]))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A callback is never followed elsewhere: a redirect is a failed delivery."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """One deadline for a whole delivery. The socket timeout alone bounds each read: an endpoint that sends its
    answer a byte at a time would hold the worker beyond the delivery's lease (and a second worker would post the
    same callback). When the deadline passes, the connection's socket is shut down and the read in progress ends."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def connection(self, base: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        deadline = self

        class Bounded(base):  # type: ignore[valid-type,misc]
            _timer: threading.Timer | None = None

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = _checked_connection

            def connect(self) -> None:
                super().connect()
                self._timer = threading.Timer(max(deadline.at - time.monotonic(), 0.0), self._expire)
                self._timer.daemon = True
                self._timer.start()

            def _expire(self) -> None:
                sock = self.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            def close(self) -> None:
                if self._timer is not None:
                    self._timer.cancel()
                super().close()

        return Bounded


class _BoundedHTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._connection = deadline.connection(http.client.HTTPConnection)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _BoundedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._connection = deadline.connection(http.client.HTTPSConnection)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One POST (I/O only): any 2xx is delivered, everything else is a failure with a short reason. The whole
    delivery ends within the timeout (not only each read); an answer that is no HTTP is a failure too."""
    if not url.lower().startswith(("https://", "http://")):
        return Outcome(False, N_("Keine http(s)-Adresse."))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  # scheme checked
    deadline = _Deadline(timeout_seconds())
    # No proxy from the environment (http_proxy, https_proxy): the peer checked before a byte is sent must be the KIS
    # itself, or a proxy in a private range would reach the addresses the check refuses on our behalf.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirect(), _BoundedHTTP(deadline), _BoundedHTTPS(deadline)
    )
    try:
        with opener.open(request, timeout=timeout_seconds()) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return Outcome(False, _http_status(exc.code))
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        refused = getattr(exc, "reason", exc)
        if isinstance(refused, AddressRefused):
            return Outcome(
                False,
                N_("Nicht zugestellt: Rückrufe an die Adresse %(address)s sind gesperrt.")
                % {"address": refused.address},
            )
        if time.monotonic() >= deadline.at:
            return Outcome(False, N_("Keine vollständige Antwort innerhalb der Zeitgrenze."))
        # The system's own words (a refused connection, a name not found) are kept as they came.
        reason = str(getattr(exc, "reason", exc))[:400] or type(exc).__name__
        return Outcome(False, N_("Nicht zugestellt: %(reason)s") % {"reason": reason})
    if 200 <= status < 300:
        return Outcome(True)
    return Outcome(False, _http_status(status))


def _http_status(status: int) -> StoredText:
    return N_("Antwort mit HTTP-Status %(status)s.") % {"status": status}


def callback_deliver(callback_id: int) -> str:
    """Deliver one callback if it is due; the resulting state. The row is taken with a lease first (two workers
    never post the same callback at once), the POST runs outside any transaction."""
    now = timezone.now()
    with transaction.atomic():
        callback = (
            KisCallback.objects.select_for_update(skip_locked=True)
            .select_related("client")
            .filter(pk=callback_id, state=KisCallback.State.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if callback is None:
            return "skipped"
        callback.attempts += 1
        callback.next_attempt_at = now + timedelta(seconds=timeout_seconds() + 30)
        callback.save(update_fields=["attempts", "next_attempt_at"])
    client = callback.client
    outcome: Outcome
    if not client.callback_url or not client.is_active:
        outcome = Outcome(False, N_("Keine Rückruf-URL oder die Verbindung ist abgeschaltet."))
        attempts_left = False
    else:
        try:
            secret = decrypt(client.callback_secret) if client.callback_secret else ""
        except CredentialDecryptionError:
            secret = ""
        if not secret:
            outcome, attempts_left = Outcome(False, N_("Kein Rückruf-Geheimnis gespeichert.")), False
        else:
            body = json.dumps(callback.payload, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": str(getattr(settings, "KIMPORTAL_KIM_SENDERSYSTEM", "KIM-Portal")),
                "X-KIM-Portal-Event": EVENT,
                "X-KIM-Portal-Delivery": str(callback.pk),
                SIGNATURE_HEADER: signature_header(secret, body, int(time.time())),
            }
            outcome = post(client.callback_url, body, headers)
            attempts_left = callback.attempts < max_attempts()
    done = timezone.now()
    if outcome.ok:
        KisCallback.objects.filter(pk=callback.pk).update(
            state=KisCallback.State.DELIVERED, delivered_at=done, last_error=""
        )
        return KisCallback.State.DELIVERED
    if attempts_left:
        KisCallback.objects.filter(pk=callback.pk).update(
            next_attempt_at=done + backoff(callback.attempts), last_error=outcome.error.stored
        )
        logger.info("KIS callback %s failed (%s), attempt %s", callback.pk, outcome.error, callback.attempts)
        return KisCallback.State.PENDING
    KisCallback.objects.filter(pk=callback.pk).update(state=KisCallback.State.FAILED, last_error=outcome.error.stored)
    logger.warning("KIS callback %s given up after %s attempts: %s", callback.pk, callback.attempts, outcome.error)
    return KisCallback.State.FAILED
