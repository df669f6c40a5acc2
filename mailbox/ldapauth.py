"""Sign-in against the hospital's directory (OpenLDAP or Active Directory) through django-auth-ldap.

Loaded only when KIMPORTAL_AUTH_LDAP_URL is set (settings add it to AUTHENTICATION_BACKENDS), so an installation
without a directory never imports python-ldap at run time.
"""

from __future__ import annotations

from typing import Any

import ldap
from django.conf import settings
from django_auth_ldap.backend import LDAPBackend, ldap_error

from mailbox.services.signin import wards_from_directory
from mailbox.signin import DIRECTORY_UNREACHABLE_ATTR

# Errors that mean the directory did not answer at all (down, refused, timed out), not that it said no.
_UNREACHABLE = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)


class PortalLDAPBackend(LDAPBackend):
    """django-auth-ldap's backend; after each directory sign-in the user's wards follow their directory groups
    (KIMPORTAL_AUTH_LDAP_GROUP_MAP), without touching groups the mapping does not name."""

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        mapping: dict[str, str] = settings.KIMPORTAL_AUTH_LDAP_GROUP_MAP
        if user is not None and mapping:
            wards_from_directory(user=user, group_dns=set(ldap_user.group_dns), mapping=mapping)
        return user

    def get_user(self, user_id: Any) -> Any:
        # django-auth-ldap hands back a deactivated account too; like ModelBackend, a session of an account a
        # manager has deactivated ends at its next request (and its sockets are refused on connect).
        user = super().get_user(user_id)
        return user if user is not None and getattr(user, "is_active", True) else None


def _directory_error(sender: Any, request: Any = None, exception: Exception | None = None, **kwargs: Any) -> None:
    # django-auth-ldap logs the error and answers "no user"; the login page would then blame the password.
    if request is not None and isinstance(exception, _UNREACHABLE):
        setattr(request, DIRECTORY_UNREACHABLE_ATTR, True)


# Connected when the backend is first loaded, i.e. only where the directory sign-in is configured.
ldap_error.connect(_directory_error, sender=PortalLDAPBackend, dispatch_uid="kimportal-ldap-unreachable")
