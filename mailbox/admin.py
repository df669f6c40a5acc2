from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.forms.models import BaseInlineFormSet
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from kimportal.errors import PortalError
from mailbox.forms import KimAccountAdminForm
from mailbox.forms_compose import kim_address_error
from mailbox.models import DienstkennungLabel, KimAccount, Mailbox, Membership
from mailbox.services import members
from mailbox.services.accounts import account_test_connection
from mailbox.services.auth_changes import changed_by, permissions_saved
from mailbox.services.manage import account_settings
from mailbox.services.members import group_change_by, membership_remove, membership_set


class MembershipFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get("role")
        ]
        if not any(data["role"] == Membership.Role.OWNER for data in kept):
            raise ValidationError(_("Ein Postfach braucht mindestens einen Eigentümer."))


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 1
    autocomplete_fields = ["user"]
    readonly_fields = ["granted_at", "granted_by"]  # set by the members service


class MailboxAdminForm(forms.ModelForm):
    """The mailbox form of the admin (which adds the model and its fields)."""

    def clean_address(self) -> str:
        address = self.cleaned_data["address"].strip().lower()
        # As the managers' mailbox wizard: an e-mail address is not yet a KIM address, and a mailbox under any other
        # address could never send (its "Senden" failed with a server error).
        if problem := kim_address_error(address):
            raise forms.ValidationError(problem)
        return address


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxAdminForm
    list_display = ["display_name", "address", "kind", "is_active"]
    search_fields = ["display_name", "address"]
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change) -> None:
        """Memberships go through the same service as the owners' page: audited, work handed back."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        mailbox = form.instance
        # The admin's change message reads these (formset.save() would set them).
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        # Additions and changes first, removals last: the mailbox never lacks an owner in between.
        for row in formset.forms:
            data = getattr(row, "cleaned_data", None)
            if not data or data.get("DELETE") or not row.has_changed():
                continue
            previous = row.instance if row.instance.pk else None
            member, group = data.get("user"), data.get("group")
            self._apply(
                request,
                membership_set,
                mailbox=mailbox,
                username=member.username if member else "",
                group_name=group.name if group else "",
                role=data["role"],
            )
            # The row now names another user or group: the old membership goes (after the new one exists).
            if previous is not None and (
                previous.user_id != getattr(member, "pk", None) or previous.group_id != getattr(group, "pk", None)
            ):
                self._apply(request, membership_remove, mailbox=mailbox, membership_id=previous.pk)
        for row in formset.deleted_forms:
            if row.instance.pk:
                self._apply(request, membership_remove, mailbox=mailbox, membership_id=row.instance.pk)

    def _apply(self, request, service, **kwargs) -> None:
        try:
            service(user=request.user, **kwargs)
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)


def _last_owner_error(mailboxes: list[Mailbox]) -> str:
    names = ", ".join(f"„{mailbox.display_name}“" for mailbox in mailboxes)
    return ngettext(
        "Damit hätte das Postfach %(names)s keinen Eigentümer mehr, der sich anmelden kann. Ein Postfach braucht "
        "mindestens einen Eigentümer: bitte zuerst einer anderen Person die Rolle Eigentümer geben.",
        "Damit hätten die Postfächer %(names)s keinen Eigentümer mehr, der sich anmelden kann. Ein Postfach braucht "
        "mindestens einen Eigentümer: bitte zuerst einer anderen Person die Rolle Eigentümer geben.",
        len(mailboxes),
    ) % {"names": names}


def _protect_last_owners(protected: list[Any], mailboxes: list[Mailbox]) -> list[Any]:
    """The delete page's list of what may not go (Django shows it instead of the confirm button)."""
    return [*protected, *(_last_owner_deleted(mailbox) for mailbox in mailboxes)]


def _last_owner_deleted(mailbox: Mailbox) -> str:
    return gettext("Postfach „%(name)s“: ein Postfach braucht mindestens einen Eigentümer, der sich anmelden kann.") % {
        "name": mailbox.display_name
    }


class PortalUserChangeForm(UserChangeForm):
    """Switching off the last owner of a mailbox who can sign in, or taking them out of its owners' group, is refused
    here, before anything is saved, as the portal's own pages refuse it (mailbox.services.members.keep_an_owner)."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        person = self.instance
        if person.pk is None:
            return cleaned
        if "is_active" in self.fields and cleaned.get("is_active") is False:
            lost = members.mailboxes_left_without_owner(users_gone=[person.pk])
            if lost:
                self.add_error("is_active", _last_owner_error(lost))
                return cleaned
        if "groups" in self.fields and cleaned.get("groups") is not None:
            groups = {person.pk: [group.pk for group in cleaned["groups"]]}
            lost = members.mailboxes_left_without_owner(groups_of=groups)
            if lost:
                self.add_error("groups", _last_owner_error(lost))
        return cleaned


class LastOwnerDeleteAdmin(admin.ModelAdmin):
    """Deleting users or groups in the admin: audited with the administrator as actor (auth_changes), and the last
    owner check and the delete are one transaction."""

    actions = ["delete_selected"]  # this one, in place of the site's

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)  # type: ignore[attr-defined]
    def delete_selected(self, request, queryset) -> Any:
        # Django's action checks (get_deleted_objects, which locks the owned mailboxes' rows) and deletes in
        # autocommit: two administrators deleting a mailbox's last two owners at once would both pass the check.
        # In one transaction the second waits for the first's locks and then finds the mailbox's last owner.
        with transaction.atomic(using=router.db_for_write(self.model)):
            return django_delete_selected(self, request, queryset)

    def delete_model(self, request, obj) -> None:
        # A group's members leave it with it: their work handed back is the administrator's doing too.
        with changed_by(request.user), group_change_by(request.user):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with changed_by(request.user), group_change_by(request.user):
            super().delete_queryset(request, queryset)


admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class PortalUserAdmin(LastOwnerDeleteAdmin, UserAdmin):
    form = PortalUserChangeForm

    def get_deleted_objects(self, objs, request) -> tuple[Any, Any, Any, list[Any]]:
        """A mailbox's last owner who can sign in is not deleted (alone or with others of the list)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        lost = members.mailboxes_left_without_owner(users_gone=[person.pk for person in objs])
        return deleted, counts, perms_needed, _protect_last_owners(list(protected), lost)

    def save_related(self, request, form, formsets, change) -> None:
        """The groups are saved here: a group left or joined hands work over as a membership change does
        (mailbox.signals), audited with the administrator as the one who changed it. The person's own permissions
        are audited once per save, only when they changed."""
        permissions_saved(
            actor=request.user,
            holder=form.instance,
            save=lambda: self._save_groups(request, form, formsets, change),
        )

    def _save_groups(self, request, form, formsets, change) -> None:
        if "groups" not in form.cleaned_data:
            with group_change_by(request.user):
                super().save_related(request, form, formsets, change)
            return
        # All groups at once, compared once (members.groups_saved): Django's own steps (the groups left, then the new)
        # would read a move between two wards of one mailbox as leaving it.
        members.groups_saved(
            actor=request.user,
            person=form.instance,
            group_ids=[group.pk for group in form.cleaned_data["groups"]],
            save=lambda: super(PortalUserAdmin, self).save_related(request, form, formsets, change),
        )


@admin.register(Group)
class PortalGroupAdmin(LastOwnerDeleteAdmin, GroupAdmin):
    def save_model(self, request, obj, form, change) -> None:
        """A rename is audited (mailbox.signals) with the administrator as the one who renamed it."""
        with changed_by(request.user):
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        """The permissions a group gives are audited as a change of who is in it is: who, which group, what was
        added and removed, once per save."""
        permissions_saved(
            actor=request.user,
            holder=form.instance,
            save=lambda: super(PortalGroupAdmin, self).save_related(request, form, formsets, change),
        )

    def get_deleted_objects(self, objs, request) -> tuple[Any, Any, Any, list[Any]]:
        """An owners' group whose people are a mailbox's last owners who can sign in is not deleted."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        lost = members.mailboxes_left_without_owner(groups_gone=[group.pk for group in objs])
        return deleted, counts, perms_needed, _protect_last_owners(list(protected), lost)


@admin.register(KimAccount)
class KimAccountAdmin(admin.ModelAdmin):
    form = KimAccountAdminForm
    list_display = [
        "mailbox",
        "cm_host",
        "smtp_port",
        "pop3_port",
        "transport_display",
        "tls_certificate_check",
        "status",
        "last_success_at",
    ]
    list_filter = ["status", "transport", "tls_certificate_check", "is_active"]
    status_fields = ["status", "status_message_display", "last_success_at", "last_attempt_at", "next_fetch_at"]
    readonly_fields = [*status_fields, "client_key_stored"]
    actions = ["test_connection"]
    fieldsets = [
        (None, {"fields": ["mailbox", "is_active"]}),
        (_("Clientmodul"), {"fields": ["cm_host", "smtp_port", "pop3_port", "timeout_seconds"]}),
        (
            _("Transportsicherung"),
            {
                "fields": ["transport", "confirm_plain"],
                "description": _(
                    "Wie das CM TLS anbietet: ab Verbindungsaufbau (SMTPS/POP3S) oder per STARTTLS/STLS. "
                    "Bei STARTTLS bricht das Portal ab, wenn das CM es nicht anbietet – nie Rückfall auf Klartext."
                ),
            },
        ),
        (
            _("Prüfung des CM-Zertifikats"),
            {
                "fields": [
                    "tls_certificate_check",
                    "tls_fingerprint_sha256",
                    "tls_ca_certificates",
                    "tls_check_hostname",
                ],
                "description": _(
                    "Das Zertifikat eines CM ist meist selbst signiert oder aus der TI: den SHA-256-Fingerabdruck zu "
                    "pinnen ist der übliche Weg. Geprüft wird vor dem Senden von Benutzername und Passwort."
                ),
            },
        ),
        (
            _("Client-Zertifikat (mTLS, optional)"),
            {
                "fields": [
                    "tls_client_certificate",
                    "client_key",
                    "client_key_passphrase",
                    "client_key_stored",
                    "remove_client_certificate",
                ]
            },
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
        (_("Status"), {"fields": list(status_fields)}),
    ]

    def save_model(self, request, obj: KimAccount, form, change: bool) -> None:
        if change:
            # As the managers' account page (mailbox.services.manage.account_save): the settings only. The fetch's
            # lease and outcome are the worker's; the copy this request read may be stale by now, and writing it back
            # dropped a running fetch's lease (a second worker could fetch the account at once), or undid a password
            # change that finished meanwhile. The password is written only when entered here. The mailbox is on
            # this form as well: left out, a change of it was reported as saved and dropped.
            fields = account_settings(password_entered="password" in form.changed_data)
            obj.save(update_fields=[*fields, "mailbox"])
        else:
            obj.save()

    @admin.display(description=_("Statusmeldung"))
    def status_message_display(self, account: KimAccount) -> str:
        return account.status_message_text

    @admin.display(description=_("Transportsicherung"), ordering="transport")
    def transport_display(self, account: KimAccount) -> str:
        if account.transport == KimAccount.Transport.PLAIN:
            return str(_("UNSICHER: unverschlüsselt"))
        return account.get_transport_display()

    @admin.display(description=_("Privater Schlüssel hinterlegt"), boolean=True)
    def client_key_stored(self, account: KimAccount) -> bool:
        return bool(account.tls_client_key_encrypted)

    @admin.action(description=_("Verbindung testen"))
    def test_connection(self, request, queryset) -> None:
        for account in queryset.select_related("mailbox"):
            for check in account_test_connection(account=account):
                level = messages.SUCCESS if check.ok else messages.ERROR
                self.message_user(request, f"{account.mailbox.address} – {check.protocol}: {check.message}", level)


@admin.register(DienstkennungLabel)
class DienstkennungLabelAdmin(admin.ModelAdmin):
    list_display = ["application", "label", "css_class"]
