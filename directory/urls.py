from __future__ import annotations

from django.urls import path

from directory import views

app_name = "directory"

urlpatterns = [
    path("", views.search, name="search"),
    path("auswahl/", views.picker, name="picker"),
    path("auswahl/uebernehmen/", views.picker_pick, name="picker-pick"),
    path("favoriten/", views.favorite_toggle, name="favorite-toggle"),
    path("kontakte/", views.contact_list, name="contacts"),
    path("kontakte/<int:pk>/gesehen/", views.contact_acknowledge, name="contact-acknowledge"),
    path("kontakte/<int:pk>/entfernen/", views.contact_remove, name="contact-remove"),
]
