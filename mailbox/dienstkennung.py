"""The Dienstkennung registry: how `X-KIM-Dienstkennung` values are labelled in lists.

A Dienstkennung is ``<Anwendung>;<Nachrichtentyp>;<Version>`` and its meaning lies in the first two
together: ``Arztbrief;Eingangsbestaetigung`` acknowledges a letter, it is not one, and
``KIM-Mail;Abwesend`` is an out-of-office reply. The registered values live as data in
``mailbox/data/dienstkennungen.json`` (the gematik list changes; new values need no code), read
once per process. Rows in DienstkennungLabel (the admin) name and colour whole applications: the
inbox filter offers them, and they label applications the data file does not know. Anything else
is shown verbatim, never hidden and never dressed up as a known kind.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache
from django.utils import translation

from mailbox.models import DienstkennungLabel
from mailbox.models.display import Badge

DATA_FILE = Path(__file__).resolve().parent / "data" / "dienstkennungen.json"
UNKNOWN_CSS = "badge-unknown"


@dataclass(frozen=True)
class RegisteredType:
    """One registered ``<Anwendung>;<Nachrichtentyp>`` with its labels."""

    application: str
    message_type: str
    versions: tuple[str, ...]
    label: str
    label_en: str

    def label_for(self, language: str | None) -> str:
        return self.label_en if (language or "").startswith("en") and self.label_en else self.label


@dataclass(frozen=True)
class Registry:
    applications: dict[str, DienstkennungLabel]  # casefolded application → built-in label and colour
    applications_en: dict[str, DienstkennungLabel]  # the same with the English labels
    exact: dict[tuple[str, str], RegisteredType]  # (application, message type), both casefolded
    prefixes: tuple[tuple[str, str, RegisteredType], ...]  # message types registered as a pattern ("ABR-*")

    def lookup(self, application: str, message_type: str) -> RegisteredType | None:
        app, mtype = application.casefold(), message_type.casefold()
        found = self.exact.get((app, mtype))
        if found is not None:
            return found
        for prefix_app, prefix, entry in self.prefixes:
            if app == prefix_app and mtype.startswith(prefix) and len(mtype) > len(prefix):
                return entry
        return None


@functools.cache
def registry() -> Registry:
    """The data file, parsed once per process (it ships with the code; a change means a deploy)."""
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    applications = {
        a["application"].casefold(): DienstkennungLabel(
            application=a["application"], label=a["label"], css_class=a.get("css_class") or "badge-neutral"
        )
        for a in data["applications"]
    }
    applications_en = {
        a["application"].casefold(): DienstkennungLabel(
            application=a["application"],
            label=a.get("label_en") or a["label"],
            css_class=a.get("css_class") or "badge-neutral",
        )
        for a in data["applications"]
    }
    exact: dict[tuple[str, str], RegisteredType] = {}
    prefixes: list[tuple[str, str, RegisteredType]] = []
    for e in data["entries"]:
        entry = RegisteredType(
            application=e["application"],
            message_type=e["message_type"],
            versions=tuple(e.get("versions", ())),
            label=e["label"],
            label_en=e.get("label_en", ""),
        )
        if entry.message_type.endswith("*"):
            prefixes.append((entry.application.casefold(), entry.message_type[:-1].casefold(), entry))
        else:
            exact[(entry.application.casefold(), entry.message_type.casefold())] = entry
    return Registry(applications=applications, applications_en=applications_en, exact=exact, prefixes=tuple(prefixes))


_LABELS_KEY = "mailbox:dienstkennung-labels"

# Per process: the admin's rows and the badges built from them, for the token the cache holds. The cache keeps only
# the token (a minute, as the rows were kept before): unpickling the rows and rebuilding the dict on every message
# page cost a third of a millisecond; a new token (expired, or deleted) reads the rows again.
_memo: tuple[str, dict[str, DienstkennungLabel], dict[bool, dict[str, DienstkennungLabel]]] | None = None


def dienstkennung_badges() -> dict[str, DienstkennungLabel]:
    """Application labels (casefolded application → label): the data file's, overridden by the admin's rows.

    The dict is shared by every caller in the process until the rows are read again: read it, never change it."""
    global _memo
    # Read on every list page: cached for a minute (admin edits show up within it).
    token: str | None = cache.get(_LABELS_KEY)
    if token is None:
        token = uuid.uuid4().hex
        cache.set(_LABELS_KEY, token, 60)
    memo = _memo
    if memo is None or memo[0] != token:
        memo = (token, {d.application.casefold(): d for d in DienstkennungLabel.objects.all()}, {})
        _memo = memo
    english = (translation.get_language() or "").startswith("en")
    built = memo[2].get(english)
    if built is None:
        built = memo[2][english] = _badges(memo[1], english)
    return built


def _badges(labels: dict[str, DienstkennungLabel], english: bool) -> dict[str, DienstkennungLabel]:
    reg = registry()
    built_in = reg.applications_en if english else reg.applications
    result = dict(built_in)
    for key, row in labels.items():
        shipped = reg.applications.get(key)
        if shipped is not None and row.label == shipped.label:
            # A seeded row the admin did not rename: its colour, the shipped name in the user's language.
            result[key] = DienstkennungLabel(
                application=row.application, label=built_in[key].label, css_class=row.css_class
            )
        else:
            result[key] = row
    return result


def split_dienstkennung(value: str) -> tuple[str, str, str]:
    """(application, message type, version), each stripped; odd spacing around ';' is tolerated."""
    parts = [p.strip() for p in value.split(";")]
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], ";".join(parts[2:]).strip(";")


def badge_for(dienstkennung: str, labels: dict[str, DienstkennungLabel]) -> Badge | None:
    """The label for application *and* message type; unknown values are shown as they are."""
    value = " ".join(dienstkennung.split())
    if not value:
        return None
    application, message_type, _version = split_dienstkennung(value)
    reg = registry()
    app_row = labels.get(application.casefold())
    entry = reg.lookup(application, message_type) if message_type else None
    if entry is not None:
        css = app_row.css_class if app_row is not None else "badge-neutral"
        return Badge(label=entry.label_for(translation.get_language()), css_class=css, title=value)
    if app_row is not None and application.casefold() not in reg.applications:
        # An application registered only in the admin: its name, and the message type as written.
        label = f"{app_row.label} · {message_type}" if message_type else app_row.label
        return Badge(label=label, css_class=app_row.css_class, title=value)
    # Unknown application, or a message type the registry does not list: verbatim (the template escapes it).
    return Badge(label=value, css_class=UNKNOWN_CSS, title=value)
