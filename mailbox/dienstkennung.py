"""The Dienstkennung registry: how `X-KIM-Dienstkennung` values are labelled in lists.

Kept as data (built-in defaults plus rows in DienstkennungLabel, editable in the admin) so that new
KIM applications need no code. Unknown values are shown verbatim, never hidden.
"""

from __future__ import annotations

from django.core.cache import cache

from mailbox.models import DienstkennungLabel
from mailbox.models.display import Badge

# Built-in labels for the common applications; rows in DienstkennungLabel (editable in the admin,
# seeded by a migration) extend and override them.
DEFAULT_LABELS = {
    "arztbrief": DienstkennungLabel(application="Arztbrief", label="eArztbrief", css_class="badge-arztbrief"),
    "eau": DienstkennungLabel(application="eAU", label="eAU", css_class="badge-eau"),
    "kim-mail": DienstkennungLabel(application="KIM-Mail", label="KIM-Mail", css_class="badge-kimmail"),
}


def dienstkennung_badges() -> dict[str, DienstkennungLabel]:
    # A small registry read on every list page: cached for a minute (admin edits show up within it).
    labels: dict[str, DienstkennungLabel] | None = cache.get("mailbox:dienstkennung-labels")
    if labels is None:
        labels = {d.application.lower(): d for d in DienstkennungLabel.objects.all()}
        cache.set("mailbox:dienstkennung-labels", labels, 60)
    return DEFAULT_LABELS | labels


def badge_for(dienstkennung: str, labels: dict[str, DienstkennungLabel]) -> Badge | None:
    """eArztbrief, eAU, KIM-Mail …; unknown Dienstkennungen are shown as they are, never hidden."""
    value = dienstkennung.strip()
    if not value:
        return None
    application = value.split(";", 1)[0].strip().lower()
    known = labels.get(application)
    if known is None:
        return Badge(label=value, css_class="badge-unknown", title=value)
    return Badge(label=known.label, css_class=known.css_class, title=value)
