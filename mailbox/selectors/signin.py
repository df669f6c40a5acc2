"""Current sign-in lockouts (django-axes' failure counters), for the managers' unlock page; whether a name tried
is a local account with its own password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Max, QuerySet, Sum
from django.utils import timezone

USERNAME = "username"
ADDRESS = "address"


@dataclass(frozen=True)
class Lockout:
    kind: str  # USERNAME or ADDRESS
    value: str
    failures: int
    last_failure: datetime
    until: datetime | None  # None: until a manager unlocks (no cool-off configured)


def _live_attempts() -> QuerySet[AccessAttempt]:
    attempts: QuerySet[AccessAttempt] = AccessAttempt.objects.all()
    if settings.AXES_COOLOFF_TIME is not None:
        # axes counts only failures within the cool-off window, measured from each record's latest failure.
        attempts = attempts.filter(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)
    return attempts


def lockout_list() -> list[Lockout]:
    """Accounts and addresses that are locked now, as axes decides it (failures at or above the limit), the most
    recent first. Not scoped to a user: lockouts belong to the house and only managers reach this."""
    limit = int(settings.AXES_FAILURE_LIMIT)
    found: list[Lockout] = []
    for kind, field in ((USERNAME, "username"), (ADDRESS, "ip_address")):
        rows = (
            _live_attempts()
            .exclude(**{f"{field}__isnull": True})
            .values(field)
            .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            .filter(failures__gte=limit)
        )
        for row in rows:
            until = row["last"] + settings.AXES_COOLOFF_TIME if settings.AXES_COOLOFF_TIME is not None else None
            found.append(Lockout(kind, str(row[field]), int(row["failures"]), row["last"], until))
    return sorted(found, key=lambda lock: (lock.last_failure, lock.kind, lock.value), reverse=True)


def has_local_password(username: str) -> bool:
    """Whether the name is an account with a password of its own here, i.e. one the model backend checks (found as
    it finds it: the exact name). Accounts the directory sign-in created have none."""
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    return user is not None and user.has_usable_password()
