"""The KIS API under /api/kis/v1/ (kimportal.urls). Documents are addressed by the client's own document id."""

from __future__ import annotations

from django.urls import path, re_path

from signing.api import views

app_name = "kisapi"

DOCUMENT_ID = r"(?P<document_id>[A-Za-z0-9][A-Za-z0-9._:-]{0,99})"

urlpatterns = [
    path("openapi.yaml", views.openapi, name="openapi"),
    path("drafts", views.drafts, name="drafts"),
    re_path(rf"^drafts/{DOCUMENT_ID}$", views.draft, name="draft"),
    re_path(rf"^drafts/{DOCUMENT_ID}/withdraw$", views.draft_withdraw_view, name="draft-withdraw"),
    re_path(rf"^drafts/{DOCUMENT_ID}/signed$", views.draft_signed, name="draft-signed"),
    # Anything else under the API answers in JSON too (after the token check), not with the portal's HTML 404.
    re_path(r"^(?P<rest>.*)$", views.not_found, name="not-found"),
]
