"""The navigation's "KIM-Konten" link: shown to managers and to owners of a mailbox (one cached read per request)."""

from __future__ import annotations

from django import template

from operations.services.kimadmin import kim_admin_any

register = template.Library()


@register.simple_tag(takes_context=True)
def kim_admin_visible(context: template.Context) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None)
    return user is not None and kim_admin_any(user)


__all__ = ["register"]
