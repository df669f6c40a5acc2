"""Reads: VZD searches and the local address book.

Searching the VZD is one LDAP search for the list attributes (the server caps it at 100), ranked here, then a
second, small search for the certificates of the entries actually shown (``(|(uid=…)…)``, eq-indexed). Asking for
``userCertificate;binary`` in the list search would decode up to 100 × ~1 KiB of DER for nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from directory import certcache
from directory import ldapfilter as f
from directory.certificates import CertState, entry_cert_state
from directory.clients.vzd import VzdError, VzdTimeout, VzdTlsError, display_fingerprint, get_client
from directory.entries import CERT_ATTRIBUTES, LIST_ATTRIBUTES, DirectoryEntry, entry_from_record, rank
from directory.models import Contact
from directory.query import MAX_TERMS, Criteria, build_filter, search_words

logger = logging.getLogger(__name__)

# Marked for extraction here, translated where it is shown.
TRUNCATED_MESSAGE = gettext_noop("mehr als 100 Treffer – bitte Suche eingrenzen")


def _tls_message(exc: VzdTlsError) -> str:
    """What went wrong with TLS, in words an administrator can act on (the search page shows it as is)."""
    if exc.kind == "pin_mismatch":
        return _(
            "Verbindung zum Verzeichnis (VZD) abgelehnt: Das Zertifikat des Konnektors passt nicht zum hinterlegten "
            "Fingerabdruck (KIMPORTAL_VZD_TLS_PIN). Der Konnektor zeigt den Fingerabdruck %(actual)s. Bitte wenden "
            "Sie sich an die Administration."
        ) % {"actual": display_fingerprint(exc.actual)}
    if exc.kind == "untrusted":
        return _(
            "Verbindung zum Verzeichnis (VZD) abgelehnt: Das Zertifikat des Konnektors stammt nicht von der "
            "hinterlegten Zertifizierungsstelle (KIMPORTAL_VZD_CA_FILE). Bitte wenden Sie sich an die Administration."
        )
    if exc.kind == "client_cert_rejected":
        return _(
            "Der Konnektor hat die Verbindung zum Verzeichnis (VZD) gleich nach dem TLS-Aufbau abgelehnt: Er "
            "verlangt ein Client-Zertifikat, und es wurde keines oder ein nicht anerkanntes vorgelegt "
            "(KIMPORTAL_VZD_CLIENT_CERT_FILE). Bitte wenden Sie sich an die Administration."
        )
    setting = {
        "pin": _("Der hinterlegte Fingerabdruck (KIMPORTAL_VZD_TLS_PIN) ist kein SHA-256-Fingerabdruck."),
        "ca_file": _("Die CA-Datei (KIMPORTAL_VZD_CA_FILE) ist nicht lesbar."),
        "client_cert": _(
            "Client-Zertifikat oder Schlüssel (KIMPORTAL_VZD_CLIENT_CERT_FILE, KIMPORTAL_VZD_CLIENT_KEY_FILE) "
            "sind nicht lesbar, passen nicht zusammen oder das Passwort des Schlüssels ist falsch."
        ),
        "url": _("CA-Datei, Fingerabdruck und Client-Zertifikat wirken nur mit einer ldaps://-Adresse."),
    }.get(exc.setting, "")
    return (
        _("Die TLS-Einstellungen für das Verzeichnis (VZD) sind fehlerhaft. %(reason)s") % {"reason": setting}
    ).strip()


def unavailable_message(exc: VzdError) -> str:
    if isinstance(exc, VzdTlsError):
        return _tls_message(exc)
    if isinstance(exc, VzdTimeout):
        return _("Das Verzeichnis (VZD) antwortet nicht rechtzeitig. Bitte versuchen Sie es gleich noch einmal.")
    return _("Das Verzeichnis (VZD) ist nicht erreichbar. Bitte versuchen Sie es später noch einmal.")


# The VZD answers at most this many entries; "Weitere Treffer anzeigen" pages through them, never past.
MAX_SHOWN = 100


@dataclass
class SearchOutcome:
    entries: list[DirectoryEntry] = field(default_factory=list)  # the ranked hits start+1 … shown
    start: int = 0  # hits before ``entries`` (already shown when more hits are added to a list)
    total: int = 0  # entries the directory returned (≤ 100)
    truncated: bool = False
    searched: bool = False  # False: nothing searchable was entered
    ignored: list[str] = field(default_factory=list)
    error: str = ""
    notices: list[str] = field(default_factory=list)

    @property
    def shown(self) -> int:
        return self.start + len(self.entries)

    @property
    def has_more(self) -> bool:
        return self.total > self.shown


def _attach_certificates(entries: list[DirectoryEntry]) -> None:
    """Certificate state for the given entries: from the cache, else with one search for the rest."""
    ttl = settings.KIMPORTAL_VZD_CERT_CACHE_SECONDS
    wanted = []
    for entry in entries:
        if not entry.addresses:
            entry.cert = CertState("missing")
        elif (cached := certcache.get(entry.uid, entry.changed)) is not None:
            entry.cert = cached
        else:
            wanted.append(entry)
    if not wanted:
        return
    result = get_client().search(f.or_(*[f.eq("uid", e.uid) for e in wanted]), CERT_ATTRIBUTES)
    by_uid = {r.first("uid"): r for r in result.records}
    for entry in wanted:
        record = by_uid.get(entry.uid)
        ders = list(record.values("userCertificate;binary")) if record else []
        entry.cert = entry_cert_state(ders, telematik_id=entry.telematik_id)
        certcache.put(entry.uid, entry.changed, entry.cert, ttl=ttl)


def directory_search(criteria: Criteria, *, limit: int | None = None, start: int = 0) -> SearchOutcome:
    """The ranked hits ``start+1 … limit`` (default: the first page). A later page asks the directory again with
    the same filter: nothing of the first answer is kept between requests (a page is a plain GET, served by any
    worker). The ranking is a total order, so the pages neither repeat nor skip an entry."""
    limit = min(limit or settings.KIMPORTAL_VZD_PAGE_SIZE, MAX_SHOWN)
    start = max(0, min(start, limit))
    built = build_filter(criteria)
    outcome = SearchOutcome(ignored=built.ignored)
    if built.ignored:
        outcome.notices.append(
            _("Zu kurze Suchbegriffe ignoriert (mindestens 3 Zeichen): %(terms)s") % {"terms": ", ".join(built.ignored)}
        )
    if built.parsed.surplus:
        # Said apart from the short ones: "Kardiologie" beyond the limit is not too short, and the user should
        # know which words did not narrow the result.
        outcome.notices.append(
            _("Nur die ersten %(count)d Suchbegriffe werden gesucht, nicht gesucht: %(terms)s")
            % {"count": MAX_TERMS, "terms": ", ".join(built.parsed.surplus)}
        )
    if built.ldap_filter is None:
        return outcome
    outcome.searched = True
    try:
        result = get_client().search(built.ldap_filter, LIST_ATTRIBUTES)
        entries = [entry_from_record(r) for r in result.records]
        if criteria.kim_only:
            # "(mail=*)" also holds for an entry whose "mail" carries no KIM address (see entries.KIM_ADDRESS).
            entries = [e for e in entries if e.addresses]
        entries = rank(entries, search_words(criteria))
        outcome.total = len(entries)
        outcome.truncated = result.truncated
        outcome.start = min(start, len(entries))
        outcome.entries = entries[start:limit]
    except VzdError as exc:
        logger.warning("VZD search failed: %s", exc)
        outcome.error = unavailable_message(exc)
        return outcome
    try:
        _attach_certificates(outcome.entries)
    except VzdError as exc:
        # The list is already there: show it, with certificates marked as not checked.
        logger.warning("VZD certificate lookup failed: %s", exc)
        outcome.notices.append(_("Zertifikate konnten nicht geprüft werden."))
    if outcome.truncated:
        outcome.notices.insert(0, _(TRUNCATED_MESSAGE))
    return outcome


def directory_entry_for_address(address: str) -> DirectoryEntry | None:
    """The VZD entry holding a KIM address, with its certificate state (raises VzdError when down)."""
    result = get_client().search(f.eq("mail", address.strip()), (*LIST_ATTRIBUTES, "userCertificate;binary"))
    if not result.records:
        return None
    record = result.records[0]
    entry = entry_from_record(record)
    if not entry.kim_version(address):
        return None  # published in "mail", but no KIM address: nobody can be sent to or remember it
    entry.cert = entry_cert_state(list(record.values("userCertificate;binary")), telematik_id=entry.telematik_id)
    return entry


def directory_entries_for_addresses(addresses: list[str]) -> dict[str, DirectoryEntry]:
    """Entries by lower-cased KIM address, in batches (used by the daily refresh)."""
    found: dict[str, DirectoryEntry] = {}
    client = get_client()
    for i in range(0, len(addresses), 40):
        batch = addresses[i : i + 40]
        result = client.search(f.or_(*[f.eq("mail", a) for a in batch]), (*LIST_ATTRIBUTES, "userCertificate;binary"))
        for record in result.records:
            entry = entry_from_record(record)
            ders = list(record.values("userCertificate;binary"))
            entry.cert = entry_cert_state(ders, telematik_id=entry.telematik_id)
            for addr in entry.addresses:
                found[addr.address.lower()] = entry
    return found


def contact_list(*, favorites_only: bool = False) -> QuerySet[Contact]:
    """The installation's local address book (one hospital per installation): favorites first, then frequent."""
    qs = Contact.objects.select_related("created_by", "updated_by")
    if favorites_only:
        qs = qs.filter(is_favorite=True)
    return qs.order_by("-is_favorite", "-use_count", "display_name")


def contact_addresses() -> set[str]:
    return {a.lower() for a in Contact.objects.filter(is_favorite=True).values_list("kim_address", flat=True)}
