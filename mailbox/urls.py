from __future__ import annotations

from django.urls import path

from mailbox import views
from mailbox.views import compose, manage, routing
from mailbox.views import signin as signin_views
from mailbox.views.dashboard import house_dashboard, mailbox_dashboard, mailbox_sla
from mailbox.views.retention import message_legal_hold, retention_days, retention_delete, retention_overview

app_name = "mailbox"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("mir-zugewiesen/", views.mine, name="mine"),
    path("benachrichtigungen/", views.notifications, name="notifications"),
    path("benachrichtigungen/gelesen/", views.notifications_read, name="notifications-read"),
    path("abwesenheit/", views.absences, name="absences"),
    path("abwesenheit/<int:pk>/beenden/", views.absence_end, name="absence-end"),
    path("postfach/<int:pk>/", views.mailbox_messages, name="mailbox-messages"),
    path("postfach/<int:pk>/abrufen/", views.mailbox_fetch_now, name="mailbox-fetch"),
    path("postfach/<int:pk>/mitglieder/", views.mailbox_members_view, name="mailbox-members"),
    path(
        "postfach/<int:pk>/mitglieder/<int:membership_pk>/entfernen/",
        views.mailbox_member_remove,
        name="mailbox-member-remove",
    ),
    path("postfach/<int:pk>/dashboard/", mailbox_dashboard, name="mailbox-dashboard"),
    path("postfach/<int:pk>/regeln/", routing.routing_rules, name="mailbox-routing"),
    path("postfach/<int:pk>/regeln/<int:rule_pk>/", routing.routing_rule_edit, name="mailbox-routing-edit"),
    path(
        "postfach/<int:pk>/regeln/<int:rule_pk>/verschieben/",
        routing.routing_rule_move,
        name="mailbox-routing-move",
    ),
    path("postfach/<int:pk>/regeln/<int:rule_pk>/aktiv/", routing.routing_rule_active, name="mailbox-routing-active"),
    path(
        "postfach/<int:pk>/regeln/<int:rule_pk>/loeschen/",
        routing.routing_rule_delete,
        name="mailbox-routing-delete",
    ),
    path("nachricht/<int:pk>/", views.message_detail, name="message-detail"),
    path("nachricht/<int:pk>/html/", views.message_html, name="message-html"),
    path("nachricht/<int:pk>/quelltext/", views.message_raw, name="message-raw"),
    path("nachricht/<int:pk>/anhang/<int:position>/", views.attachment_download, name="attachment-download"),
    path("nachricht/<int:pk>/anhaenge/", views.message_attachments, name="message-attachments"),
    path("nachricht/<int:pk>/sperren/", views.message_claim_view, name="message-claim"),
    path("nachricht/<int:pk>/freigeben/", views.message_release_view, name="message-release"),
    path("nachricht/<int:pk>/sperre-aufheben/", views.message_break_lock_view, name="message-break-lock"),
    path("nachricht/<int:pk>/uebernehmen/", views.message_take, name="message-take"),
    path("nachricht/<int:pk>/zuweisen/", views.message_assign, name="message-assign"),
    path("nachricht/<int:pk>/zuweisung-entfernen/", views.message_unassign, name="message-unassign"),
    path("nachricht/<int:pk>/status/", views.message_state, name="message-state"),
    path("nachricht/<int:pk>/notiz/", views.message_note, name="message-note"),
    path("nachricht/<int:pk>/aufbewahrungssperre/", message_legal_hold, name="message-legal-hold"),
    # The send path: compose, reply, forward, drafts, the sent message and its delivery.
    path("nachricht/<int:pk>/antworten/", compose.message_reply, name="message-reply"),
    path("nachricht/<int:pk>/allen-antworten/", compose.message_reply_all, name="message-reply-all"),
    path("nachricht/<int:pk>/weiterleiten/", compose.message_forward, name="message-forward"),
    path("nachricht/<int:pk>/unterhaltung/", compose.message_conversation, name="message-conversation"),
    path("nachricht/<int:pk>/eingangsbestaetigung/", compose.message_acknowledge, name="message-acknowledge"),
    path("verfassen/", compose.compose, name="compose"),
    path("verfassen/adresse/", compose.compose_address, name="compose-address"),
    path("entwuerfe/", compose.drafts, name="drafts"),
    path("entwurf/<int:pk>/", compose.draft_edit, name="draft-edit"),
    path("entwurf/<int:pk>/anhang/", compose.draft_attachment_add, name="draft-attachment-add"),
    path(
        "entwurf/<int:pk>/anhang/<int:attachment_pk>/entfernen/",
        compose.draft_attachment_remove,
        name="draft-attachment-remove",
    ),
    path("entwurf/<int:pk>/empfaenger-entfernen/", compose.draft_remove_recipient, name="draft-remove-recipient"),
    path("entwurf/<int:pk>/senden/", compose.draft_send, name="draft-send"),
    path("entwurf/<int:pk>/verwerfen/", compose.draft_discard, name="draft-discard"),
    path("entwurf/<int:pk>/uebernehmen/", compose.draft_take_over, name="draft-take-over"),
    path("entwurf/<int:pk>/ehemalig-loeschen/", compose.draft_left_discard, name="draft-left-discard"),
    path("gesendet/", compose.sent, name="sent"),
    path("postfach/<int:pk>/gesendet/", compose.mailbox_sent, name="mailbox-sent"),
    path("postausgang/", compose.outbox, name="outbox"),
    path("gesendet/<int:pk>/", compose.outgoing_detail, name="outgoing-detail"),
    path("gesendet/<int:pk>/wiederholen/", compose.outgoing_retry_view, name="outgoing-retry"),
    path("gesendet/<int:pk>/ungewiss/", compose.outgoing_uncertain, name="outgoing-uncertain"),
    path("gesendet/<int:pk>/uebernehmen/", compose.outgoing_claim_view, name="outgoing-claim"),
    path("gesendet/<int:pk>/zurueckholen/", compose.outgoing_withdraw_view, name="outgoing-withdraw"),
    path(
        "gesendet/<int:pk>/anhang/<int:attachment_pk>/",
        compose.outgoing_attachment_download,
        name="outgoing-attachment-download",
    ),
    path("gesendet/<int:pk>/freigeben/", compose.outgoing_release_view, name="outgoing-release"),
]

# The managers' pages (Leitung), mounted at /leitung/ under the namespace "manage" by the root URLconf.
manage_urlpatterns = [
    path("", manage.home, name="home"),
    path("dashboard/", house_dashboard, name="dashboard"),
    path("dashboard/<int:pk>/servicezeit/", mailbox_sla, name="dashboard-sla"),
    path("aufbewahrung/", retention_overview, name="retention"),
    path("aufbewahrung/<int:pk>/frist/", retention_days, name="retention-days"),
    path("aufbewahrung/<int:pk>/loeschen/", retention_delete, name="retention-delete"),
    path("postfaecher/", manage.mailboxes, name="mailboxes"),
    path("postfaecher/neu/", manage.mailbox_create, name="mailbox-create"),
    path("postfaecher/<int:pk>/", manage.mailbox_detail, name="mailbox"),
    path("postfaecher/<int:pk>/konto/", manage.mailbox_account, name="mailbox-account"),
    path("postfaecher/<int:pk>/aktiv/", manage.mailbox_active, name="mailbox-active"),
    path(
        "postfaecher/<int:pk>/mitglieder/<int:membership_pk>/entfernen/",
        manage.mailbox_member_remove,
        name="mailbox-member-remove",
    ),
    path("gruppen/", manage.groups, name="groups"),
    path("gruppen/<int:pk>/", manage.group_detail, name="group"),
    path("gruppen/<int:pk>/entfernen/<int:user_pk>/", manage.group_member_remove, name="group-member-remove"),
    path("vertretungen/", manage.absences, name="absences"),
    path("vertretungen/<int:pk>/beenden/", manage.absence_end, name="absence-end"),
    path("sammelaenderungen/", manage.bulk, name="bulk"),
    path("zugriffe/", manage.access_report, name="access"),
    path("zugriffe/export/", manage.access_export, name="access-export"),
    path("anmeldesperren/", signin_views.signin_lockouts, name="signin-lockouts"),
    path("anmeldesperren/entsperren/", signin_views.signin_lockout_release, name="signin-lockout-release"),
]
