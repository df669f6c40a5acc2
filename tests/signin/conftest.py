from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from tests.mailbox.factories import UserFactory

PASSWORD = "pw-secret-123"


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # Dozens of sign-ins per test; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def station(_fast_passwords):
    return UserFactory(username="station")


@pytest.fixture
def manager(_fast_passwords):
    user = UserFactory(username="leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user
