from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MailboxConfig(AppConfig):
    name = "mailbox"
    verbose_name = _("Postfächer")

    def ready(self) -> None:
        from kimportal.sessions import user_flag_register
        from mailbox import signals, signin
        from mailbox.permissions import MANAGER_PERMISSION, manager_flag

        signals.connect()
        # Every page asks whether the user is a manager (the navigation): read with the user, not on its own.
        user_flag_register(MANAGER_PERMISSION, manager_flag)
        # Sign-ins, failures, lockouts and logouts go to the audit trail.
        signin.connect()
