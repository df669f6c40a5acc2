from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from mailbox.forms import KimAccountAdminForm
from mailbox.models import AuditEvent, DienstkennungLabel, KimAccount, Mailbox, Membership
from mailbox.services.accounts import account_test_connection


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ["display_name", "address", "kind", "is_active"]
    search_fields = ["display_name", "address"]
    inlines = [MembershipInline]


@admin.register(KimAccount)
class KimAccountAdmin(admin.ModelAdmin):
    form = KimAccountAdminForm
    list_display = ["mailbox", "cm_host", "smtp_port", "pop3_port", "tls_mode", "status", "last_success_at"]
    list_filter = ["status", "tls_mode", "is_active"]
    readonly_fields = ["status", "status_message", "last_success_at", "last_attempt_at", "next_fetch_at"]
    actions = ["test_connection"]
    fieldsets = [
        (None, {"fields": ["mailbox", "is_active"]}),
        (
            _("Clientmodul"),
            {"fields": ["cm_host", "smtp_port", "pop3_port", "tls_mode", "tls_fingerprint_sha256", "timeout_seconds"]},
        ),
        (
            _("Aufrufkontext und Benutzername"),
            {
                "fields": [
                    "fachdienst",
                    "fachdienst_pop3",
                    "mandant_id",
                    "client_system_id",
                    "workplace_id",
                    "user_id",
                    "konnektor_id",
                    "smtp_username_template",
                    "pop3_username_template",
                    "password",
                ]
            },
        ),
        (_("Abruf"), {"fields": ["poll_interval_seconds", "keep_on_server_days"]}),
        (_("Status"), {"fields": readonly_fields}),
    ]

    @admin.action(description=_("Verbindung testen"))
    def test_connection(self, request, queryset) -> None:
        for account in queryset.select_related("mailbox"):
            for check in account_test_connection(account=account):
                level = messages.SUCCESS if check.ok else messages.ERROR
                self.message_user(request, f"{account.mailbox.address} – {check.protocol}: {check.message}", level)


@admin.register(DienstkennungLabel)
class DienstkennungLabelAdmin(admin.ModelAdmin):
    list_display = ["application", "label", "css_class"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "mailbox", "message"]
    list_filter = ["action"]
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
