from __future__ import annotations

from django.urls import path

from mailbox import views

app_name = "mailbox"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("postfach/<int:pk>/", views.mailbox_messages, name="mailbox-messages"),
    path("postfach/<int:pk>/abrufen/", views.mailbox_fetch_now, name="mailbox-fetch"),
    path("nachricht/<int:pk>/", views.message_detail, name="message-detail"),
    path("nachricht/<int:pk>/html/", views.message_html, name="message-html"),
    path("nachricht/<int:pk>/quelltext/", views.message_raw, name="message-raw"),
    path("nachricht/<int:pk>/anhang/<int:position>/", views.attachment_download, name="attachment-download"),
]
