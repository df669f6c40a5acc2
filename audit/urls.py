from __future__ import annotations

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.event_search_page, name="search"),
    path("export.csv", views.event_export_csv, name="export"),
]
