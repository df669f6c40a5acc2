"""Django's database sessions (SESSION_ENGINE), read with a query compiled once.

Every request and every socket connect reads its session; the ORM spent more CPU compiling that lookup than
PostgreSQL spent answering it (kimportal.prepared). The table, the data and everything else are Django's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.db import router
from django.db.models import QuerySet
from django.utils import timezone

from kimportal.prepared import PreparedQuery


def _session_query(session_key: str) -> QuerySet[Session, tuple[str, datetime]]:
    # The expiry is compared in Python: the query keeps one shape (only ids and keys are bound).
    return Session.objects.filter(session_key=session_key).values_list("session_data", "expire_date")


_SESSION = PreparedQuery(_session_query)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        rows = _SESSION.rows(key, using=router.db_for_read(Session)) if key is not None else []
        if key is None or not rows or rows[0][1] <= timezone.now():
            # As Django's store: an unknown or expired key is forgotten (a new one is made on save).
            self._session_key = None
            return None
        data, expires = rows[0]
        return Session(session_key=key, session_data=data, expire_date=expires)
