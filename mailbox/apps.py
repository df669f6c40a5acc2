from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MailboxConfig(AppConfig):
    name = "mailbox"
    verbose_name = _("Postfächer")

    def ready(self) -> None:
        from mailbox import signals, signin

        signals.connect()
        # Sign-ins, failures, lockouts and logouts go to the audit trail.
        signin.connect()
