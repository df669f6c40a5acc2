from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SigningConfig(AppConfig):
    name = "signing"
    verbose_name = _("Signatur")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from signing.services.comfort import comfort_end_on_logout

        # Logging out (also the idle sign-out) ends the physician's Komfortsignatur.
        user_logged_out.connect(comfort_end_on_logout, dispatch_uid="signing-comfort-logout")
