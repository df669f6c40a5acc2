"""The idle logout's settings for the page's warning (portal.js reads them from data attributes)."""

from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def idle_logout_seconds() -> int:
    """Seconds without input before the server ends the session; 0 when the idle logout is off."""
    return max(0, round(float(settings.KIMPORTAL_IDLE_LOGOUT_MINUTES) * 60))
