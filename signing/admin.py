"""Django admin: read-mostly views for IT staff. Card mappings and workplaces are managed on the managers' pages
(/signatur/verwaltung/…, audited); drafts, batches and signatures change only through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from signing.models import BatchItem, Draft, Signature, SignatureBatch, SignerCard, Workplace


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown, never changed here: every change has to pass a service (and its audit)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workplace)
class WorkplaceAdmin(ReadOnlyAdmin):
    list_display = ["label", "workplace_id", "ct_id", "is_active"]
    search_fields = ["label", "workplace_id", "ct_id"]


@admin.register(SignerCard)
class SignerCardAdmin(ReadOnlyAdmin):
    list_display = ["user", "telematik_id", "iccsn", "set_by", "updated_at"]
    search_fields = ["user__username", "telematik_id", "iccsn"]


@admin.register(Draft)
class DraftAdmin(ReadOnlyAdmin):
    list_display = ["subject", "document_type", "patient_reference", "author", "signer", "state", "version"]
    list_filter = ["state", "document_type", "source"]
    search_fields = ["subject", "patient_reference", "external_id"]


class BatchItemInline(admin.TabularInline):  # type: ignore[type-arg]
    """The batch's documents, read-only."""

    model = BatchItem
    fields = ["position", "draft", "request_id", "state", "code", "text_shown"]
    readonly_fields = ["position", "draft", "request_id", "state", "code", "text_shown"]
    extra = 0
    can_delete = False


@admin.register(SignatureBatch)
class SignatureBatchAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "signer", "job_number", "state", "total", "signed_count", "failed_count"]
    list_filter = ["state"]
    inlines = [BatchItemInline]


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    list_display = ["draft", "format", "document_version", "signed_at", "verified_at", "verification_error"]
    exclude = ["signer_certificate"]


# The KIS API's client systems, tokens and callbacks (issue 12): registered by their own module.
import signing.api.admin  # noqa: E402, F401
