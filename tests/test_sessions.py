"""kimportal.sessions: Django's database sessions, read with a compiled-once query, behave as Django's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from kimportal.sessions import SessionStore


@pytest.mark.django_db
def test_a_live_session_loads_and_an_expired_or_unknown_one_does_not():
    store = SessionStore()
    store["who"] = "anna"
    store.create()
    store.save()
    key = store.session_key
    assert SessionStore(key).load() == {"who": "anna"}

    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = SessionStore(key)
    assert expired.load() == {}
    assert expired.session_key is None  # forgotten: a save makes a new key, never revives the old one

    unknown = SessionStore("x" * 32)
    assert unknown.load() == {}
    assert unknown.session_key is None
