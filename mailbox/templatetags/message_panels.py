"""{% message_panels message %}: the sections other apps add to the message page (mailbox.extensions)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from mailbox.extensions import panels

register = template.Library()


@register.simple_tag(takes_context=True)
def message_panels(context: dict[str, Any], message: Any) -> SafeString:
    """Each registered panel that applies to the message, rendered by its app (HTML the app's template escaped)."""
    request = context["request"]
    return SafeString("".join(panel.render(request, message) for panel in panels() if panel.applies(message)))
