"""kimportal.sessions: Django's database sessions, read with a compiled-once query, behave as Django's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import auth
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from kimportal.sessions import SessionStore, _loads_as_model_backend


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


# The signed-in user (kimportal.sessions.session_user): the usual case read by a compiled query, every other case
# decided by Django's get_user.


@pytest.fixture
def signed_in(client, django_user_model):
    user = django_user_model.objects.create_user("anna", password="pw-1", first_name="Anna", is_staff=True)
    client.force_login(user)
    return client, user


def _user_of(client):
    return client.get(reverse("mailbox:inbox")).wsgi_request.user


@pytest.mark.django_db
def test_the_session_user_is_the_whole_row_django_would_read(signed_in, django_user_model, monkeypatch):
    client, user = signed_in

    def not_here(request):
        raise AssertionError("the usual case is read by session_user itself")

    monkeypatch.setattr(auth, "get_user", not_here)
    seen = _user_of(client)
    fresh = django_user_model.objects.get(pk=user.pk)
    assert seen.__class__ is django_user_model and seen.pk == user.pk and not seen._state.adding
    assert seen.get_deferred_fields() == set()
    assert {f.attname: getattr(seen, f.attname) for f in fresh._meta.concrete_fields} == {
        f.attname: getattr(fresh, f.attname) for f in fresh._meta.concrete_fields
    }


@pytest.mark.django_db
def test_a_password_changed_elsewhere_or_a_deactivated_account_signs_the_session_out(signed_in, django_user_model):
    client, user = signed_in
    assert _user_of(client).is_authenticated
    user.set_password("pw-2")
    user.save()
    assert not _user_of(client).is_authenticated
    client.force_login(user)
    assert _user_of(client).is_authenticated
    django_user_model.objects.filter(pk=user.pk).update(is_active=False)
    assert not _user_of(client).is_authenticated


@pytest.mark.django_db
def test_a_session_signed_with_a_retired_secret_is_kept_under_the_new_one(signed_in, settings):
    client, user = signed_in
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-" + "x" * 40
    request = client.get(reverse("mailbox:inbox")).wsgi_request
    assert request.user.is_authenticated  # Django's rule: re-signed with the current secret
    assert request.session[HASH_SESSION_KEY] == user.get_session_auth_hash()


def test_only_backends_that_read_users_as_model_backend_does_are_read_here():
    assert _loads_as_model_backend("django.contrib.auth.backends.ModelBackend")
    assert not _loads_as_model_backend("axes.backends.AxesStandaloneBackend")
    assert not _loads_as_model_backend("django.contrib.auth.backends.AllowAllUsersModelBackend")
    assert not _loads_as_model_backend("mailbox.ldapauth.PortalLDAPBackend")
