"""Django admin for KIS client systems: IT staff manage them here as managers do on their page — every change
through the services (audited), tokens and callback secrets shown once, on the response page, never stored."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from signing.api.services import Issued, kis_client_create, kis_client_update, kis_token_issue, kis_token_revoke
from signing.models import KisCallback, KisClient, KisDraft, KisToken

ISSUED_ATTR = "_kis_issued"


def _issued_page(request: HttpRequest, issued: list[Issued]) -> TemplateResponse:
    response = TemplateResponse(
        request, "signing/kis_admin_issued.html", {"issued": issued, "title": _("Nur jetzt sichtbar")}
    )
    response["Cache-Control"] = "no-store"
    return response


class KisTokenInline(admin.TabularInline):  # type: ignore[type-arg]
    model = KisToken
    fields = ["prefix", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at", "revoked_by"]
    readonly_fields = ["prefix", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at", "revoked_by"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class KisClientAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    callback_url = forms.URLField(label=_("Rückruf-URL"), required=False, max_length=500, assume_scheme="https")

    class Meta:
        model = KisClient
        fields = ["name", "mailboxes", "is_active"]

    def clean_name(self) -> str:
        # The service refuses a name that differs only in case; said here, next to the field, not as an error page.
        name = str(self.cleaned_data["name"]).strip()
        if KisClient.objects.filter(name__iexact=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(_("Eine KIS-Anbindung mit diesem Namen gibt es schon."))
        return name

    def clean_callback_url(self) -> str:
        url = str(self.cleaned_data.get("callback_url") or "")
        if url and not url.lower().startswith(("https://", "http://")):
            raise forms.ValidationError(_("Die Rückruf-URL beginnt mit https:// oder http://."))
        return url


@admin.register(KisClient)
class KisClientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = KisClientAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "is_active", "callback_url", "created_at"]
    search_fields = ["name"]
    fields = ["name", "mailboxes", "callback_url", "is_active"]
    filter_horizontal = ["mailboxes"]
    inlines = [KisTokenInline]
    actions = ["issue_token"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The name is what the audit and the drafts' history show: it stays once set.
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # switched off (aktiv) instead: its drafts keep naming it

    def save_model(self, request: HttpRequest, obj: KisClient, form: ModelForm, change: bool) -> None:  # type: ignore[type-arg]
        data = form.cleaned_data
        if change:
            kis_client_update(
                manager=request.user,
                client=obj,
                mailboxes=list(data["mailboxes"]),
                callback_url=data["callback_url"],
                is_active=data["is_active"],
            )
            return
        issued = kis_client_create(
            manager=request.user,
            name=data["name"],
            mailboxes=list(data["mailboxes"]),
            callback_url=data["callback_url"],
        )
        if not data["is_active"]:
            kis_client_update(
                manager=request.user,
                client=issued.client,
                mailboxes=list(data["mailboxes"]),
                callback_url=data["callback_url"],
                is_active=False,
            )
        obj.pk = issued.client.pk
        obj._state.adding = False
        setattr(request, ISSUED_ATTR, issued)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:  # type: ignore[type-arg]
        """The departments were set by the service (audited); the token inline is read-only: nothing to save, and
        the admin's change message reads what was (not) saved."""
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def response_add(self, request: HttpRequest, obj: KisClient, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, ISSUED_ATTR, None)
        if issued is not None:
            return _issued_page(request, [issued])
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description=_("Neues Token erzeugen"))
    def issue_token(self, request: HttpRequest, queryset: QuerySet[KisClient]) -> TemplateResponse:
        return _issued_page(request, [kis_token_issue(manager=request.user, client=c) for c in queryset])


@admin.register(KisToken)
class KisTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["client", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["client"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # issued on the client (an action), so that it is shown once

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Widerrufen"), permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[KisToken]) -> None:
        for token in queryset:
            kis_token_revoke(manager=request.user, token=token)
        messages.success(request, _("Tokens widerrufen."))


@admin.register(KisCallback)
class KisCallbackAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["pk", "client", "link", "state", "attempts", "next_attempt_at", "last_error_shown"]
    list_filter = ["state", "client"]
    # The stored text (msgid and parameters) is shown translated, not as its JSON.
    exclude = ["last_error"]
    readonly_fields = ["last_error_shown"]

    @admin.display(description=_("letzter Fehler"))
    def last_error_shown(self, callback: KisCallback) -> str:
        return callback.last_error_text

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(KisDraft)
class KisDraftAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Which KIS document id is which draft, and what its callbacks last said: read-only."""

    list_display = ["document_id", "client", "draft", "announced_state", "announced_review", "finished", "created_at"]
    list_filter = ["client", "finished"]
    search_fields = ["document_id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
