"""The managers' page for KIS client systems, /signatur/verwaltung/kis/ (kimportal.urls; namespace "kis")."""

from __future__ import annotations

from django.urls import path

from signing.api import manage

app_name = "kis"

urlpatterns = [
    path("", manage.clients, name="clients"),
    path("<int:pk>/", manage.client_detail, name="client"),
    path("<int:pk>/token/", manage.token_issue, name="token-issue"),
    path("<int:pk>/token/<int:token_pk>/widerrufen/", manage.token_revoke, name="token-revoke"),
    path("<int:pk>/geheimnis/", manage.secret_renew, name="secret-renew"),
]
