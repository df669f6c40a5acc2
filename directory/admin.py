from __future__ import annotations

from django.contrib import admin

from directory.models import Contact


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ("display_name", "kim_address", "kim_version", "cert_status", "is_favorite", "use_count", "status")
    list_filter = ("is_favorite", "status", "cert_status")
    search_fields = ("display_name", "kim_address", "telematik_id")
    readonly_fields = ("snapshot", "created_by", "created_at", "updated_by", "updated_at", "checked_at")
