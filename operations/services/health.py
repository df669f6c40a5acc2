"""The operations checks: one round reads the database, asks every system in parallel and judges what it saw.

A round costs the TI a POP3 login per KIM account, a few Konnektor calls and one directory search, so rounds are
rationed: the last report is kept in the operations store for ``KIMPORTAL_HEALTH_CACHE_SECONDS`` and a lock lets
only one process check at a time; whoever asks meanwhile gets the last report. Every probe has a short timeout
(``KIMPORTAL_HEALTH_TIMEOUT``) and the round a deadline, so a hanging system shows up red instead of hanging the
page.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext_noop as N_

from directory.clients.vzd import config_from_settings as vzd_config
from kimportal.texts import StoredText
from mailbox.clients.tls import Endpoint
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount, Mailbox, OutgoingMessage
from mailbox.services.accounts import account_endpoint, cm_error_text
from mailbox.services.fetch import account_lease_acquire, account_lease_release
from operations.services import clock, heartbeat
from operations.services.probes import (
    SMCB_TYPES,
    CardProbe,
    CertificateProbe,
    KonnektorProbe,
    LoginProbe,
    probe_cm_certificate,
    probe_cm_login,
    probe_directory,
    probe_konnektor,
)
from operations.services.results import (
    ERROR,
    OK,
    UNKNOWN,
    WARNING,
    AccountStatus,
    CardStatus,
    CertificateStatus,
    Component,
    Msg,
    Report,
    worst,
)
from operations.services.store import store
from signing.api.tokens import days_left_if_soon
from signing.models import Draft, KisClient, Workplace
from signing.services.konnektor import konnektor_config

log = logging.getLogger(__name__)

# Reports are pickled: a new layout of operations.services.results gets a new key (an upgrade reads no old one).
REPORT_KEY = "health:report:v1"
LOCK_KEY = "health:lock"
# A report older than this is not handed out while another process checks: wait for the new one instead.
STALE_REPORT_SECONDS = 300.0
# Outbox: a message waiting this long means sending is stuck (warning), or broken (error).
OUTBOX_WARN_SECONDS = 15 * 60
OUTBOX_ERROR_SECONDS = 60 * 60
# The Konnektor is asked for the cards of at most this many workplaces per round.
MAX_WORKPLACES = 10

T = TypeVar("T")


def check_timeout() -> float:
    return float(settings.KIMPORTAL_HEALTH_TIMEOUT)


def round_deadline() -> float:
    # The Konnektor probe makes several calls one after another, each within check_timeout().
    return 3 * check_timeout()


# --- the cached report --------------------------------------------------------------------------------------


def health_report(*, max_age: float | None = None) -> Report:
    """The last report if it is younger than ``max_age`` (default: KIMPORTAL_HEALTH_CACHE_SECONDS), else a new
    round — unless another process is checking right now: then its result (or the last report, if recent)."""
    max_age = float(settings.KIMPORTAL_HEALTH_CACHE_SECONDS) if max_age is None else max_age
    asked = time.time()
    cached = _cached()
    if cached is not None and asked - cached.checked_at < max_age:
        return cached
    token = secrets.token_hex(8)
    try:
        locked = store().add(LOCK_KEY, token, timeout=lock_seconds())
    except Exception:
        log.warning("operations store unavailable; checking with this process's cache only", exc_info=True)
        return _report_without_store(max_age)
    if locked:
        return _checked_under_lock(token, fresh_since=asked - max_age)
    if cached is not None and asked - cached.checked_at < STALE_REPORT_SECONDS:
        return cached
    # No recent report and someone else is checking: wait for theirs. Never check without the lock — a flood of
    # waiters each starting a round when a slow one overran would hammer the TI. If the holder died, its lock
    # expires (lock_seconds) and one waiter takes it over; whoever still has nothing then gets the last report, or
    # a report that says a check is still running.
    deadline = time.monotonic() + lock_seconds() + 1
    while time.monotonic() < deadline:
        time.sleep(0.2)  # a round takes seconds; its result appears in the store
        fresh = _cached()
        if fresh is not None and fresh.checked_at >= asked - max_age:
            return fresh
        try:
            if store().add(LOCK_KEY, token, timeout=lock_seconds()):
                return _checked_under_lock(token, fresh_since=asked - max_age)
        except Exception:
            log.warning("operations store unavailable while waiting for a check", exc_info=True)
            break
    return _cached() or _still_checking()


def lock_seconds() -> int:
    """How long the lock of a round lasts: a round takes at most round_deadline() plus the database's part."""
    return int(round_deadline()) + 10


def _checked_under_lock(token: str, *, fresh_since: float) -> Report:
    try:
        # Read again under the lock: a round that ended between this caller's last read and its taking the lock (its
        # holder unlocked) left a report as fresh as one this caller would make. Checking again would be a second
        # round right after the first.
        fresh = _cached()
        if fresh is not None and fresh.checked_at >= fresh_since:
            return fresh
        report = run_checks()
        _keep(report)
        return report
    finally:
        _unlock(token)


def _still_checking() -> Report:
    """Not kept: only the answer to a caller who waited a whole lock period for another process's round."""
    report = Report(checked_at=time.time(), duration=0.0)
    report.components.append(
        Component(
            key="checks",
            label=Msg.of(N_("Prüfung")),
            state=UNKNOWN,
            text=Msg.of(N_("Eine Prüfung läuft noch und hat noch kein Ergebnis. Bitte gleich erneut versuchen.")),
        )
    )
    return report


# Without the store (Redis down) each process keeps its own last report, so monitors still cannot hammer the TI.
_local_lock = threading.Lock()
_local_report: Report | None = None


def _report_without_store(max_age: float) -> Report:
    global _local_report
    with _local_lock:
        if _local_report is None or time.time() - _local_report.checked_at >= max_age:
            _local_report = run_checks()
        return _local_report


def forget_report() -> None:
    """The next health_report() checks anew."""
    store().delete(REPORT_KEY)


def _cached() -> Report | None:
    try:
        report = store().get(REPORT_KEY)
    except Exception:
        log.warning("operations store unavailable", exc_info=True)
        return None
    return report if isinstance(report, Report) else None


def _keep(report: Report) -> None:
    try:
        store().set(REPORT_KEY, report, timeout=3600)
    except Exception:
        log.warning("could not keep the operations report", exc_info=True)


def _unlock(token: str) -> None:
    try:
        if store().get(LOCK_KEY) == token:
            store().delete(LOCK_KEY)
    except Exception:
        log.warning("could not release the operations check lock", exc_info=True)


# --- one round ----------------------------------------------------------------------------------------------


@dataclass
class _Account:
    account: KimAccount
    endpoint: Endpoint | None
    endpoint_error: StoredText | None
    lease: str | None  # our hold on the account's fetch lease during the login test
    login: Future[LoginProbe] | None = None


def run_checks() -> Report:
    started = time.monotonic()
    now = timezone.now()
    report = Report(checked_at=time.time(), duration=0.0)
    database_ok = _check_database(report)
    database_clock = _database_clock() if database_ok else None
    accounts: list[_Account] = []
    pool: ThreadPoolExecutor | None = None
    try:
        if database_ok:
            accounts = _accounts_with_leases()
        # A POP3 login takes milliseconds; threads enough that many accounts do not queue behind a hanging CM.
        pool = ThreadPoolExecutor(max_workers=min(32, 6 + len(accounts)), thread_name_prefix="operations-check")
        for item in accounts:
            if item.endpoint is not None and item.lease is not None:
                endpoint = replace(item.endpoint, timeout=min(item.endpoint.timeout, check_timeout()))
                item.login = pool.submit(probe_cm_login, endpoint)
        cm_certificates = _submit_cm_certificates(pool, [a.account for a in accounts])
        workplaces = _workplaces(accounts) if database_ok else []
        konnektor = pool.submit(
            probe_konnektor,
            konnektor_config(),
            mandant_id=settings.KIMPORTAL_KONNEKTOR_MANDANT,
            client_system_id=settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM,
            workplaces=workplaces,
            timeout=check_timeout(),
        )
        directory = pool.submit(probe_directory, vzd_config(), timeout=check_timeout())
        redis_check = pool.submit(_redis_ping) if settings.REDIS_URL else None
        futures: list[Future[Any]] = [konnektor, directory, *cm_certificates.values()]
        futures += [a.login for a in accounts if a.login is not None]
        if redis_check is not None:
            futures.append(redis_check)
        wait_for(futures, timeout=round_deadline())
        redis_clock: clock.Reading | None = None
        if redis_check is not None:
            redis_error, redis_clock = _result(redis_check, None) or ("timeout", None)
            _judge_redis(report, redis_error)
        _judge_konnektor(report, _result(konnektor, None), workplaces, now)
        _judge_directory(report, _result(directory, None))
        _judge_accounts(report, accounts, cm_certificates, now, database_ok=database_ok)
        if database_ok:
            _judge_kis_tokens(report, now)
        worker_clock = _judge_celery(report)
        _judge_clocks(report, database_clock, redis_clock, worker_clock)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for item in accounts:
            if item.lease is not None:
                account_lease_release(account_id=item.account.pk, token=item.lease)
    report.components.sort(key=lambda c: ORDER.index(c.key) if c.key in ORDER else len(ORDER))
    report.certificates.sort(key=lambda c: (c.days_left is None, c.days_left or 0))
    report.duration = time.monotonic() - started
    return report


ORDER = [
    "database",
    "redis",
    "clock",
    "konnektor",
    "cards",
    "certificates",
    "directory",
    "clientmodul",
    "fetch",
    "outbox",
    "kis_tokens",
    "celery_beat",
    "celery_worker",
]


def _result(future: Future[T], default: T | None) -> T | None:
    """The probe's answer, or ``default`` when it did not finish in time (or failed unexpectedly)."""
    if not future.done():
        return default
    try:
        return future.result()
    except Exception:
        log.exception("an operations probe failed")
        return default


def _too_slow() -> Msg:
    return Msg.of(N_("Keine Antwort innerhalb von %(seconds)d Sekunden."), seconds=round(round_deadline()))


# --- database and Redis -------------------------------------------------------------------------------------


def _check_database(report: Report) -> bool:
    label = Msg(N_("Datenbank"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        log.warning("database check failed: %s", exc)
        report.components.append(
            Component("database", label, ERROR, Msg.of(N_("Die Datenbank antwortet nicht (%(detail)s)."), detail=exc))
        )
        return False
    report.components.append(Component("database", label, OK, Msg(N_("Die Datenbank antwortet."))))
    return True


def _redis_ping() -> tuple[str, clock.Reading | None]:
    """("", Redis's clock against this process's) when Redis answers, else (the error, None)."""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            reading = clock.redis_reading(client)
        finally:
            client.close()
    except redis.RedisError as exc:
        return str(exc) or exc.__class__.__name__, None
    return "", reading


def _database_clock() -> clock.Reading | None:
    try:
        return clock.database_reading()
    except Exception:
        log.warning("could not read the database's clock", exc_info=True)
        return None


def _judge_redis(report: Report, error: str | None) -> None:
    label = Msg(N_("Redis (Warteschlange, Live-Ereignisse)"))
    if error == "":
        report.components.append(Component("redis", label, OK, Msg(N_("Redis antwortet."))))
        return
    text = _too_slow() if error == "timeout" else Msg.raw(error or "")
    report.components.append(
        Component(
            "redis",
            label,
            ERROR,
            Msg.of(N_("Redis antwortet nicht: %(detail)s Ohne Redis ruht der Abruf und der Versand."), detail=text),
        )
    )


# --- Konnektor, cards, certificates ------------------------------------------------------------------------


def _workplaces(accounts: list[_Account]) -> list[str]:
    """The workplaces to ask the Konnektor for cards: the signing workstations and the KIM accounts' own."""
    ids = set(Workplace.objects.filter(is_active=True).values_list("workplace_id", flat=True))
    ids |= {a.account.workplace_id for a in accounts if a.account.is_active and a.account.workplace_id}
    return sorted(ids)[:MAX_WORKPLACES]


def _judge_konnektor(report: Report, probe: KonnektorProbe | None, workplaces: list[str], now: dt.datetime) -> None:
    label = Msg(N_("Konnektor"))
    cards_label = Msg(N_("Karten (SMC-B, eHBA)"))
    if probe is None:
        report.components.append(Component("konnektor", label, ERROR, _too_slow()))
        report.components.append(
            Component("cards", cards_label, UNKNOWN, Msg(N_("Nicht prüfbar: der Konnektor antwortet nicht.")))
        )
        return
    if probe.error:
        report.components.append(Component("konnektor", label, ERROR, Msg.raw(probe.error)))
        report.components.append(
            Component("cards", cards_label, UNKNOWN, Msg(N_("Nicht prüfbar: der Konnektor ist nicht erreichbar.")))
        )
        return
    report.konnektor_product = " ".join(p for p in (probe.vendor, probe.product_name) if p)
    report.konnektor_version = probe.product_version
    report.components.append(
        Component(
            "konnektor",
            label,
            OK,
            Msg.of(
                N_("Erreichbar: %(product)s, Version %(version)s."),
                product=report.konnektor_product or "–",
                version=probe.product_version or "–",
            ),
        )
    )
    for card in probe.cards:
        report.cards.append(_card_status(card, now))
    report.certificates.extend(c.certificate for c in report.cards if c.certificate is not None)
    report.components.append(Component("cards", cards_label, *_cards_verdict(report.cards, probe, workplaces)))


def _cards_verdict(cards: list[CardStatus], probe: KonnektorProbe, workplaces: list[str]) -> tuple[str, Msg]:
    if not workplaces:
        return WARNING, Msg(
            N_(
                "Nicht prüfbar: kein Arbeitsplatz bekannt "
                "(Arbeitsplätze unter Signatur oder WorkplaceId der KIM-Konten)."
            )
        )
    smcbs = [c for c in cards if c.card_type in SMCB_TYPES]
    ehbas = [c for c in cards if c.card_type not in SMCB_TYPES]
    if probe.card_errors and not cards:
        return ERROR, Msg.of(N_("Der Konnektor nennt keine Karten: %(detail)s"), detail="; ".join(probe.card_errors))
    if not smcbs:
        return ERROR, Msg(N_("Keine SMC-B gesteckt: ohne die Karte der Einrichtung funktioniert KIM nicht."))
    state = worst([c.state for c in cards])
    text = Msg.of(N_("%(smcb)d SMC-B, %(ehba)d eHBA gesteckt."), smcb=len(smcbs), ehba=len(ehbas))
    if state != OK:
        text = Msg.of(N_("%(summary)s Bitte die Karten unten prüfen."), summary=text)
    if probe.card_errors:
        # A workplace the Konnektor does not know (4006) hides the cards of its terminals.
        state = worst([state, WARNING])
        text = Msg.of(
            N_("%(summary)s Nicht alle Arbeitsplätze abfragbar: %(detail)s"),
            summary=text,
            detail="; ".join(probe.card_errors),
        )
    return state, text


PIN_TEXTS = {
    "VERIFIED": N_("PIN freigeschaltet."),
    "VERIFIABLE": N_("PIN prüfbar (noch nicht freigeschaltet), %(tries)s Versuche übrig."),
    "DISABLED": N_("PIN-Abfrage abgeschaltet."),
    "BLOCKED": N_("PIN gesperrt: mit der PUK entsperren."),
    "TRANSPORT_PIN": N_("Transport-PIN: die Karte ist noch nicht in Betrieb genommen (PIN ändern)."),
    "EMPTY_PIN": N_("Leer-PIN: die Karte ist noch nicht in Betrieb genommen (PIN setzen)."),
}


def _card_status(probe: CardProbe, now: dt.datetime) -> CardStatus:
    card, pin = probe.card, probe.pin
    smcb = card.card_type in SMCB_TYPES
    if pin is None:
        state, text = WARNING, Msg.of(N_("PIN-Status nicht lesbar: %(detail)s"), detail=probe.pin_error)
    else:
        tries = "–" if pin.left_tries is None else pin.left_tries
        text = Msg.of(PIN_TEXTS.get(pin.status, N_("PIN-Status %(status)s.")), status=pin.status, tries=tries)
        if pin.status == "BLOCKED":
            state = ERROR
        elif pin.status in ("TRANSPORT_PIN", "EMPTY_PIN"):
            # Without its SMC-B the house has no KIM; an eHBA not yet in use only stops its physician's signing.
            state = ERROR if smcb else WARNING
        elif pin.status == "VERIFIABLE" and pin.left_tries is not None and pin.left_tries < 3:
            state = WARNING
        else:
            state = OK
    holder = card.holder_name or ""
    kind = "smcb" if smcb else "ehba"
    reference = "C.AUT" if smcb else "C.QES"
    certificate = _certificate_status(
        kind,
        Msg.of(N_("%(type)s %(holder)s (%(ref)s)"), type=card.card_type, holder=holder, ref=reference),
        card.iccsn or card.card_handle,
        probe.certificate,
        now,
    )
    return CardStatus(
        card_type=card.card_type,
        holder=holder,
        iccsn=card.iccsn or "",
        ct_id=card.ct_id,
        slot_id=card.slot_id,
        pin_status=pin.status if pin is not None else "",
        left_tries=pin.left_tries if pin is not None else None,
        state=state,
        text=text,
        certificate=certificate,
    )


def _certificate_status(
    kind: str, label: Msg, ident: str, probe: CertificateProbe | None, now: dt.datetime
) -> CertificateStatus:
    if probe is None or probe.not_after is None:
        detail = probe.error if probe is not None else ""
        return CertificateStatus(
            kind, label, ident, None, None, UNKNOWN, Msg.of(N_("Nicht lesbar: %(detail)s"), detail=detail or "–")
        )
    days = (probe.not_after - now).total_seconds() / 86400
    date = timezone.localtime(probe.not_after).strftime("%d.%m.%Y")
    if days <= 0:
        state, text = ERROR, Msg.of(N_("Abgelaufen am %(date)s."), date=date)
    elif days <= settings.KIMPORTAL_CERT_WARN_DAYS:
        state, text = WARNING, Msg.of(N_("Läuft in %(days)d Tagen ab (%(date)s)."), days=int(days), date=date)
    else:
        state, text = OK, Msg.of(N_("Gültig bis %(date)s (%(days)d Tage)."), days=int(days), date=date)
    return CertificateStatus(kind, label, ident, probe.not_after.timestamp(), days, state, text)


def _certificates_component(report: Report) -> None:
    label = Msg(N_("Zertifikate"))
    certificates = report.certificates
    # The cards' certificates come from the Konnektor: while it cannot be asked they are unchecked, not fine.
    cards_unchecked = any(c.key == "cards" and c.state == UNKNOWN for c in report.components)
    if not certificates:
        report.components.append(Component("certificates", label, UNKNOWN, Msg(N_("Kein Zertifikat lesbar."))))
        return
    state = worst([c.state for c in certificates])
    if state == OK and cards_unchecked:
        report.components.append(
            Component(
                "certificates",
                label,
                UNKNOWN,
                Msg(N_("Die Zertifikate der Karten sind nicht prüfbar, solange der Konnektor nicht antwortet.")),
            )
        )
        return
    if state == OK:
        soonest = min(c.days_left for c in certificates if c.days_left is not None)
        if len(certificates) == 1:
            text = Msg.of(
                N_("Das Zertifikat ist länger als %(warn)d Tage gültig (es endet in %(days)d Tagen)."),
                warn=settings.KIMPORTAL_CERT_WARN_DAYS,
                days=int(soonest),
            )
        else:
            text = Msg.of(
                N_("Alle %(count)d Zertifikate länger als %(warn)d Tage gültig (das nächste endet in %(days)d Tagen)."),
                count=len(certificates),
                warn=settings.KIMPORTAL_CERT_WARN_DAYS,
                days=int(soonest),
            )
    else:
        bad = [c for c in certificates if c.state != OK]
        text = Msg.of(
            N_("%(names)s: bitte erneuern oder prüfen."),
            names="; ".join(f"{c.label} – {c.text}" for c in bad),
        )
    report.components.append(Component("certificates", label, state, text))


# --- directory ----------------------------------------------------------------------------------------------


def _judge_directory(report: Report, error: str | None) -> None:
    label = Msg(N_("Verzeichnisdienst (VZD)"))
    if error is None:
        report.components.append(Component("directory", label, ERROR, _too_slow()))
    elif error:
        report.components.append(Component("directory", label, ERROR, Msg.raw(error)))
    else:
        report.components.append(Component("directory", label, OK, Msg(N_("Das Verzeichnis beantwortet Suchen."))))


# --- KIM accounts -------------------------------------------------------------------------------------------


def _accounts_with_leases() -> list[_Account]:
    """Every KIM account of an active mailbox; the active ones with their fetch lease taken for the login test, so
    that test and fetch never hold the maildrop at once ([IN-USE]). A fetch that is running keeps its lease and
    the account's own status tells (the fetch is the better login test)."""
    result = []
    accounts = KimAccount.objects.select_related("mailbox").filter(mailbox__is_active=True)
    for account in accounts.order_by("mailbox__display_name", "pk"):
        endpoint, error, lease = None, None, None
        if account.is_active:
            try:
                endpoint = account_endpoint(account, "pop3")
            except CredentialDecryptionError as exc:
                error = cm_error_text(exc, host=account.cm_host, port=account.pop3_port)
            else:
                lease = account_lease_acquire(account_id=account.pk)
        result.append(_Account(account, endpoint, error, lease))
    return result


def _submit_cm_certificates(pool: ThreadPoolExecutor, accounts: list[KimAccount]) -> dict[tuple[str, int], Future[Any]]:
    futures: dict[tuple[str, int], Future[Any]] = {}
    for account in accounts:
        if not account.is_active or account.transport == KimAccount.Transport.PLAIN:
            continue
        key = (account.cm_host, account.pop3_port)
        if key not in futures:
            futures[key] = pool.submit(
                probe_cm_certificate,
                account.cm_host,
                account.pop3_port,
                starttls=account.transport == KimAccount.Transport.STARTTLS,
                timeout=check_timeout(),
            )
    return futures


def _judge_accounts(
    report: Report,
    accounts: list[_Account],
    cm_certificates: dict[tuple[str, int], Future[Any]],
    now: dt.datetime,
    *,
    database_ok: bool,
) -> None:
    outbox, signing = _queue_depths(now) if accounts else ({}, {})
    for item in accounts:
        report.accounts.append(_account_status(item, outbox.get(item.account.mailbox_id, {}), signing, now))
    # A switched-off mailbox has no account line (nothing is fetched or tested), but the mail it holds is counted.
    listed = {a.mailbox_id for a in report.accounts}
    held_off = {pk: entry["held"] for pk, entry in outbox.items() if entry["held"] and pk not in listed}
    if held_off:
        for pk, address in Mailbox.objects.filter(pk__in=held_off).values_list("pk", "address").order_by("address"):
            report.held_elsewhere[address] = held_off[pk]
    for (host, port), future in cm_certificates.items():
        probe = _result(future, None)
        if probe is None:
            probe = CertificateProbe(None, error=str(_too_slow()))
        label = Msg.of(N_("TLS-Zertifikat des Clientmoduls %(where)s"), where=f"{host}:{port}")
        report.certificates.append(_certificate_status("cm_tls", label, f"{host}:{port}", probe, now))
    _certificates_component(report)

    if not database_ok:
        unknown = Msg(N_("Nicht prüfbar: die Datenbank antwortet nicht."))
        for key, title in (
            ("clientmodul", N_("Clientmodul (Anmeldung)")),
            ("fetch", N_("Abruf")),
            ("outbox", N_("Postausgang")),
        ):
            report.components.append(Component(key, Msg(title), UNKNOWN, unknown))
        return
    active = [a for a in report.accounts if a.active]
    if not active:
        missing = Msg(N_("Kein aktives KIM-Konto eingerichtet."))
        for key, title in (("clientmodul", N_("Clientmodul (Anmeldung)")), ("fetch", N_("Abruf"))):
            report.components.append(Component(key, Msg(title), WARNING, missing))
    else:
        failed = [a for a in active if a.login_state != OK]
        text = (
            Msg.of(N_("Anmeldung bei allen %(count)d KIM-Konten erfolgreich."), count=len(active))
            if not failed
            else Msg.of(
                N_("Anmeldung bei %(failed)d von %(count)d KIM-Konten fehlgeschlagen."),
                failed=len(failed),
                count=len(active),
            )
        )
        report.components.append(
            Component("clientmodul", Msg(N_("Clientmodul (Anmeldung)")), worst([a.login_state for a in active]), text)
        )
        late = [a for a in active if a.fetch_state != OK]
        text = (
            Msg.of(N_("Alle %(count)d KIM-Konten wurden zuletzt planmäßig abgerufen."), count=len(active))
            if not late
            else Msg.of(
                N_("%(late)d von %(count)d KIM-Konten ohne aktuellen Abruf."), late=len(late), count=len(active)
            )
        )
        report.components.append(Component("fetch", Msg(N_("Abruf")), worst([a.fetch_state for a in active]), text))
    waiting = sum(a.outbox_waiting for a in report.accounts)
    failed_24h = sum(a.outbox_failed for a in report.accounts)
    uncertain = sum(a.outbox_uncertain for a in report.accounts)
    held = sum(a.outbox_held for a in report.accounts) + sum(report.held_elsewhere.values())
    depth = (
        Msg.of(
            N_(
                "%(waiting)d wartend, %(failed)d fehlgeschlagen (24 h), %(uncertain)d Zustellung ungewiss, "
                "%(held)d zurückgehalten (abgeschaltet)."
            ),
            waiting=waiting,
            failed=failed_24h,
            uncertain=uncertain,
            held=held,
        )
        if held
        else Msg.of(
            N_("%(waiting)d wartend, %(failed)d fehlgeschlagen (24 h), %(uncertain)d Zustellung ungewiss."),
            waiting=waiting,
            failed=failed_24h,
            uncertain=uncertain,
        )
    )
    report.components.append(
        Component("outbox", Msg(N_("Postausgang")), worst([a.outbox_state for a in report.accounts]), depth)
    )


# --- KIS API tokens -----------------------------------------------------------------------------------------


def _judge_kis_tokens(report: Report, now: dt.datetime) -> None:
    """Every active KIS connection needs a token that is not revoked and stays valid beyond the warning period: a
    KIS whose last token expired can no longer hand in letters (red); one whose last token expires soon must get a
    new one in time (yellow). No line while there is no active connection; switching one off silences it."""
    valid = Q(tokens__revoked_at__isnull=True, tokens__expires_at__gt=now)
    clients = list(
        KisClient.objects.filter(is_active=True).annotate(valid_until=Max("tokens__expires_at", filter=valid))
    )
    if not clients:
        return
    label = Msg(N_("KIS-Tokens"))
    warn_days = settings.KIMPORTAL_KIS_TOKEN_WARN_DAYS
    none_valid: list[Msg] = []
    expiring: list[Msg] = []
    for client in clients:
        if client.valid_until is None:
            none_valid.append(
                Msg.of(N_("„%(name)s“ hat kein gültiges Token: das KIS kann nichts einreichen."), name=client.name)
            )
            continue
        left = days_left_if_soon(client.valid_until, now)
        if left is None:
            continue
        if left < 1:
            text = N_("Das letzte gültige Token von „%(name)s“ läuft in weniger als einem Tag ab.")
            expiring.append(Msg.of(text, name=client.name))
        elif left < 2:
            # Not "morgen": 24-48 hours from 20:00 may end the day after tomorrow.
            text = N_("Das letzte gültige Token von „%(name)s“ läuft in weniger als zwei Tagen ab.")
            expiring.append(Msg.of(text, name=client.name))
        else:
            text = N_("Das letzte gültige Token von „%(name)s“ läuft in %(days)d Tagen ab.")
            expiring.append(Msg.of(text, name=client.name, days=left))
    if none_valid or expiring:
        advice = Msg(N_("Bitte ein neues Token erzeugen und im KIS eintragen."))
        state = ERROR if none_valid else WARNING
        report.components.append(Component("kis_tokens", label, state, _sentences([*none_valid, *expiring, advice])))
        return
    report.components.append(
        Component(
            "kis_tokens",
            label,
            OK,
            Msg.of(
                N_("Alle %(count)d KIS-Anbindungen haben ein Token, das länger als %(warn)d Tage gültig ist."),
                count=len(clients),
                warn=warn_days,
            ),
        )
    )


# --- outbox ------------------------------------------------------------------------------------------------------


def _queue_depths(now: dt.datetime) -> tuple[dict[int, dict[str, Any]], dict[tuple[int, str], int]]:
    waiting = [OutgoingMessage.State.QUEUED, OutgoingMessage.State.SENDING]
    outbox: dict[int, dict[str, Any]] = {}
    rows = (
        OutgoingMessage.objects.filter(
            Q(state__in=[*waiting, OutgoingMessage.State.UNCERTAIN, OutgoingMessage.State.HELD])
            | Q(state=OutgoingMessage.State.FAILED, updated_at__gte=now - dt.timedelta(hours=24))
        )
        .values("mailbox_id", "state")
        .annotate(count=Count("id"), oldest=Min("queued_at"))
    )
    for row in rows:
        entry = outbox.setdefault(
            row["mailbox_id"], {"waiting": 0, "failed": 0, "uncertain": 0, "held": 0, "oldest": None}
        )
        if row["state"] in waiting:
            entry["waiting"] += row["count"]
            if row["oldest"] is not None and (entry["oldest"] is None or row["oldest"] < entry["oldest"]):
                entry["oldest"] = row["oldest"]
        elif row["state"] == OutgoingMessage.State.FAILED:
            entry["failed"] += row["count"]
        elif row["state"] == OutgoingMessage.State.HELD:
            entry["held"] += row["count"]
        else:
            entry["uncertain"] += row["count"]
    states = [Draft.State.DRAFT, Draft.State.FAILED, Draft.State.SIGNING, Draft.State.SIGNED]
    signing = {
        (row["mailbox_id"], row["state"]): row["count"]
        for row in Draft.objects.filter(state__in=states).values("mailbox_id", "state").annotate(count=Count("id"))
    }
    return outbox, signing


def age_text(seconds: float) -> Msg:
    if seconds < 120:
        return Msg.of(N_("%(n)d s"), n=int(seconds))
    if seconds < 2 * 3600:
        return Msg.of(N_("%(n)d min"), n=int(seconds // 60))
    if seconds < 2 * 86400:
        return Msg.of(N_("%(n)d h"), n=int(seconds // 3600))
    return Msg.of(N_("%(n)d Tagen"), n=int(seconds // 86400))


def _login(item: _Account) -> tuple[str, Msg]:
    account = item.account
    if not account.is_active:
        return OK, Msg(N_("Abruf abgeschaltet: nicht geprüft."))
    if item.endpoint_error:
        return ERROR, Msg.raw(item.endpoint_error)
    if item.lease is None:
        # A fetch holds the maildrop right now; its own outcome is the login test.
        if account.status == KimAccount.Status.OK:
            return OK, Msg(N_("Ein Abruf läuft gerade; der letzte Abruf war erfolgreich."))
        if account.status == KimAccount.Status.UNKNOWN:
            return OK, Msg(N_("Ein Abruf läuft gerade (der erste für dieses Konto)."))
        # Both translated when the page is shown: the stored reason, or the status's (lazy) label.
        return ERROR, Msg.raw(StoredText.of(account.status_message) or KimAccount.Status(account.status).label)
    probe = _result(item.login, None) if item.login is not None else None
    if probe is None:
        return ERROR, _too_slow()
    return probe.state, probe.text


def _fetch(account: KimAccount, now: dt.datetime) -> tuple[float | None, str, Msg]:
    if not account.is_active:
        return None, OK, Msg(N_("Abruf abgeschaltet."))
    failing = account.status in (KimAccount.Status.AUTH_FAILED, KimAccount.Status.ERROR)
    problem: Msg | str = ""
    if account.status != KimAccount.Status.OK and account.status_message:
        problem = Msg.of(" %(detail)s", detail=StoredText.of(account.status_message))
    if account.last_success_at is None:
        state = ERROR if failing else WARNING
        return None, state, Msg.of(N_("Noch kein erfolgreicher Abruf.%(problem)s"), problem=problem)
    age = max(0.0, (now - account.last_success_at).total_seconds())
    poll = account.poll_interval_seconds
    if failing:
        state = ERROR
    elif age <= max(3 * poll, 120):
        state = OK
    elif age <= max(10 * poll, 900):
        state = WARNING
    else:
        state = ERROR
    return age, state, Msg.of(N_("Zuletzt erfolgreich vor %(age)s.%(problem)s"), age=age_text(age), problem=problem)


def _account_status(
    item: _Account, outbox: dict[str, Any], signing: dict[tuple[int, str], int], now: dt.datetime
) -> AccountStatus:
    account = item.account
    login_state, login_text = _login(item)
    fetch_age, fetch_state, fetch_text = _fetch(account, now)
    oldest = outbox.get("oldest")
    oldest_wait = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    uncertain = outbox.get("uncertain", 0)
    if oldest_wait is not None and oldest_wait > OUTBOX_ERROR_SECONDS:
        outbox_state = ERROR
    elif uncertain or (oldest_wait is not None and oldest_wait > OUTBOX_WARN_SECONDS):
        outbox_state = WARNING
    else:
        outbox_state = OK
    if oldest_wait is not None:
        outbox_text = Msg.of(N_("Die älteste Nachricht wartet seit %(age)s."), age=age_text(oldest_wait))
    elif uncertain:
        outbox_text = Msg(N_("Zustellung ungewiss: jemand muss entscheiden, ob erneut gesendet wird."))
    elif outbox.get("held", 0):
        # Not a fault: someone switched the mailbox or its account off; the mail goes out when it is on again.
        outbox_text = Msg(
            N_("Zurückgehaltene Nachrichten gehen erst hinaus, wenn Postfach und KIM-Konto wieder an sind.")
        )
    else:
        outbox_text = Msg(N_("Nichts wartet."))
    mailbox_id = account.mailbox_id
    return AccountStatus(
        mailbox_id=mailbox_id,
        address=account.mailbox.address,
        display_name=account.mailbox.display_name,
        active=account.is_active,
        login_state=login_state,
        login_text=login_text,
        last_success_at=account.last_success_at.timestamp() if account.last_success_at else None,
        fetch_age=fetch_age,
        fetch_state=fetch_state,
        fetch_text=fetch_text,
        outbox_waiting=outbox.get("waiting", 0),
        outbox_failed=outbox.get("failed", 0),
        outbox_uncertain=uncertain,
        outbox_held=outbox.get("held", 0),
        outbox_oldest_wait=oldest_wait,
        outbox_state=outbox_state,
        outbox_text=outbox_text,
        signing_open=signing.get((mailbox_id, Draft.State.DRAFT), 0) + signing.get((mailbox_id, Draft.State.FAILED), 0),
        signing_running=signing.get((mailbox_id, Draft.State.SIGNING), 0),
        signing_signed=signing.get((mailbox_id, Draft.State.SIGNED), 0),
    )


# --- Celery -------------------------------------------------------------------------------------------------


def _judge_celery(report: Report) -> heartbeat.Stamp | None:
    """Judges beat and the worker from their stamps; the worker's stamp (for its clock), if it is fresh."""
    beat_label, worker_label = Msg(N_("Celery beat (Zeitplan)")), Msg(N_("Celery worker (Hintergrundaufgaben)"))
    try:
        beat, worker = heartbeat.read_stamps()
    except Exception as exc:
        text = Msg.of(N_("Lebenszeichen nicht lesbar: %(detail)s"), detail=str(exc))
        report.components.append(Component("celery_beat", beat_label, UNKNOWN, text))
        report.components.append(Component("celery_worker", worker_label, UNKNOWN, text))
        return None
    now, limit = time.time(), heartbeat.stale_after()
    report.beat_age, report.worker_age, report.worker_host = beat.age(now), worker.age(now), worker.host
    beat_alive = report.beat_age is not None and report.beat_age <= limit
    report.components.append(Component("celery_beat", beat_label, *_stamp_verdict(report.beat_age, limit, beat=True)))
    state, text = _stamp_verdict(report.worker_age, limit, beat=False)
    if state == ERROR and not beat_alive:
        # Without beat no heartbeat is queued: a silent worker may simply have had nothing to do.
        state, text = UNKNOWN, Msg(N_("Nicht prüfbar, solange Celery beat keine Lebenszeichen schickt."))
    report.components.append(Component("celery_worker", worker_label, state, text))
    return worker if report.worker_age is not None and report.worker_age <= limit else None


# --- clocks -------------------------------------------------------------------------------------------------------


def _judge_clocks(
    report: Report,
    database: clock.Reading | None,
    redis: clock.Reading | None,
    worker: heartbeat.Stamp | None,
) -> None:
    """This server's, Redis's and the Celery worker's clocks against PostgreSQL's (see operations.services.clock).

    A worker's clock is the one it measured with its last heartbeat. What could not be read is left out: the database
    and Redis have lines of their own."""
    label = Msg(N_("Uhrzeit"))
    if database is None:
        report.components.append(
            Component("clock", label, UNKNOWN, Msg(N_("Nicht prüfbar, solange die Datenbank nicht antwortet.")))
        )
        return
    # Each clock's offset from PostgreSQL's, and how far that reading may be off.
    against_database = [(Msg(N_("dieses Webservers")), -database.offset, database.error)]
    if redis is not None:
        against_database.append((Msg(N_("von Redis")), redis.offset - database.offset, redis.error + database.error))
    if worker is not None and worker.clock_offset is not None:
        against_database.append(
            (Msg.of(N_("des Celery workers %(host)s"), host=worker.host), worker.clock_offset, worker.clock_error)
        )
    allowed = clock.limit()
    skewed = [
        Msg.of(
            N_("Die Uhr %(which)s geht %(amount)s gegenüber der Datenbank vor.")
            if offset > 0
            else N_("Die Uhr %(which)s geht %(amount)s gegenüber der Datenbank nach."),
            which=which,
            amount=_offset_text(abs(offset)),
        )
        for which, offset, error in against_database
        if abs(offset) - error > allowed
    ]
    if not skewed:
        widest = max(abs(offset) for _which, offset, _error in against_database)
        text = Msg.of(N_("Die Uhren stimmen überein (höchstens %(ms)d ms Abstand)."), ms=round(widest * 1000))
        report.components.append(Component("clock", label, OK, text))
        return
    text = Msg.of(
        N_(
            "%(skewed)s Erlaubt sind %(allowed)d ms: Live-Listen können Änderungen von Kollegen verpassen, Lesesperren "
            "zu früh oder zu spät enden. Bitte die Zeitsynchronisation (chrony) der Server prüfen."
        ),
        skewed=_sentences(skewed),
        allowed=round(allowed * 1000),
    )
    report.components.append(Component("clock", label, WARNING, text))


def _offset_text(seconds: float) -> Msg:
    # Rounded, as the milliseconds are: a reading of 89.998 s is 90 s, not the 89 s age_text's whole seconds say.
    return Msg.of(N_("%(n)d ms"), n=round(seconds * 1000)) if seconds < 10 else age_text(round(seconds))


def _sentences(texts: list[Msg]) -> Msg:
    """Texts one after the other, each translated when shown."""
    joined = texts[0]
    for text in texts[1:]:
        joined = Msg.of("%(first)s %(next)s", first=joined, next=text)
    return joined


def _stamp_verdict(age: float | None, limit: float, *, beat: bool) -> tuple[str, Msg]:
    if age is None:
        if beat:
            return ERROR, Msg(N_("Noch nie ein Lebenszeichen: läuft Celery beat (genau einmal je Installation)?"))
        return ERROR, Msg(N_("Noch nie ein Lebenszeichen: läuft ein Celery worker?"))
    if age > limit:
        if beat:
            return ERROR, Msg.of(
                N_("Seit %(age)s kein Lebenszeichen: ohne beat kein Abruf, keine Versandwiederholung."),
                age=age_text(age),
            )
        return ERROR, Msg.of(
            N_("Seit %(age)s kein Lebenszeichen: Hintergrundaufgaben (Abruf, Versand) bleiben liegen."),
            age=age_text(age),
        )
    return OK, Msg.of(N_("Letztes Lebenszeichen vor %(age)s."), age=age_text(age))
