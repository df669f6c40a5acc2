"""KIM administration for owners and managers: the provider's Account Manager behind the portal's mailboxes.

The Account Manager holds the truth (out-of-office note, limits, status, version); the portal asks it on every page
and changes it only through the calls here. Each change is allowed to the mailbox's owners and the house's managers
only, recorded in the audit trail once the provider accepted it, and a refusal or an unreachable provider becomes
one German sentence (KimAdminError) with nothing changed in the portal.

The password is the one exception where the portal holds state of its own: the Clientmodul logs in with the
password stored on the KimAccount, so the provider and the portal must never disagree after a change. See
:func:`password_change` for how that is kept (docs/kim-admin.md explains it for administrators).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from kimportal.errors import NotAllowed, PortalError
from kimportal.texts import N_, Stored
from mailbox import crypto
from mailbox.clients.pop3 import Pop3Refused, pop3_login_check
from mailbox.clients.smtp import smtp_login_check
from mailbox.clients.tls import CmAuthFailed, CmError
from mailbox.models import KimAccount, Mailbox, Membership, member_roles
from mailbox.permissions import is_manager
from mailbox.services import manage as manage_services
from mailbox.services.accounts import ConnectionCheck, account_endpoint, account_test_connection
from mailbox.services.audit import audit_record
from operations.clients.accountmanager import (
    AccountInfo,
    AccountLimits,
    AccountManagerClient,
    AccountManagerError,
    OutOfOffice,
    ServiceInformation,
)
from operations.models import KimRegistration, PasswordChange
from operations.services import amauth

log = logging.getLogger(__name__)


class KimAdminError(PortalError):
    """The Account Manager refused or could not be asked; `message` says so in German, and what that means."""


# Failures that happen before anything reaches the provider: nothing can have changed there.
_NOT_SENT = frozenset({"password_policy", "invalid", "konnektor", "no_smcb", "tls", "credentials"})


def _answer_lost(exc: AccountManagerError) -> bool:
    """Whether the request may have arrived and changed something at the provider (no answer, or a 5xx)."""
    return exc.code == "timeout" or (exc.status is not None and exc.status >= 500)


def _refused(exc: AccountManagerError) -> KimAdminError:
    tail = " " + _("Es wurde nichts geändert.")
    if _answer_lost(exc):
        # The request may have arrived: say so rather than claim nothing happened.
        tail = " " + _("Ob die Änderung beim Anbieter angekommen ist, ist ungewiss; bitte die Seite neu laden.")
    return KimAdminError(exc.text + tail)


# --- who may administer which mailbox (user-scoped reads) --------------------------------------------------------


def kim_admin_allowed(user: Any, mailbox: Mailbox) -> bool:
    """Managers for every mailbox; owners for the active mailboxes they own (an ex-owner has no role any more)."""
    if is_manager(user):
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    return member_roles(user).get(mailbox.pk) == Membership.Role.OWNER


def require_kim_admin(user: Any, mailbox: Mailbox) -> None:
    if not kim_admin_allowed(user, mailbox):
        raise NotAllowed(_("Nur Eigentümer des Postfachs und die Leitung dürfen das KIM-Konto verwalten."))


def kim_mailbox_list_for_user(user: Any) -> list[Mailbox]:
    """The mailboxes with a KIM account this user may administer."""
    if not getattr(user, "is_authenticated", False):
        return []
    mailboxes = Mailbox.objects.filter(account__isnull=False).select_related("account").order_by("display_name")
    if is_manager(user):
        return list(mailboxes)
    owned = [pk for pk, role in member_roles(user).items() if role == Membership.Role.OWNER]
    return list(mailboxes.filter(pk__in=owned))


def kim_admin_any(user: Any) -> bool:
    """Whether the navigation shows the KIM pages (one cached read per request)."""
    if is_manager(user):
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    return Membership.Role.OWNER in member_roles(user).values()


def kim_mailbox_get_for_user(user: Any, pk: int) -> Mailbox:
    """The mailbox if the user may administer it; Mailbox.DoesNotExist otherwise (views answer 404)."""
    mailbox = Mailbox.objects.select_related("account").filter(pk=pk, account__isnull=False).first()
    if mailbox is None or not kim_admin_allowed(user, mailbox):
        raise Mailbox.DoesNotExist
    return mailbox


def kim_registration_get_for_user(user: Any, pk: int) -> KimRegistration:
    """A registration the user started (another manager's stays theirs: its secrets were typed by them); a draft
    older than REGISTRATION_DRAFT_MAX_AGE is gone even before the hourly task wiped it."""
    if not is_manager(user):
        raise KimRegistration.DoesNotExist
    expired = Q(state=KimRegistration.State.DRAFT, created_at__lt=timezone.now() - REGISTRATION_DRAFT_MAX_AGE)
    return KimRegistration.objects.exclude(expired).get(
        pk=pk, created_by=user, state__in=[KimRegistration.State.DRAFT, KimRegistration.State.REGISTERED]
    )


# A wizard left open (tab closed, never cancelled) must not keep the registration code and passwords for ever.
REGISTRATION_DRAFT_MAX_AGE = timedelta(hours=24)


def registrations_expire() -> int:
    """Drafts older than REGISTRATION_DRAFT_MAX_AGE become "abandoned" with their secrets wiped (hourly, beat).
    A draft being registered right now (its row locked) is left to that click. Returns how many were wiped."""
    cutoff = timezone.now() - REGISTRATION_DRAFT_MAX_AGE
    with transaction.atomic():
        stale = KimRegistration.objects.select_for_update(skip_locked=True).filter(
            state=KimRegistration.State.DRAFT, created_at__lt=cutoff
        )
        return KimRegistration.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).update(
            state=KimRegistration.State.ABANDONED,
            reference_id_encrypted="",
            initial_password_encrypted="",
            password_encrypted="",
        )


# --- reading -------------------------------------------------------------------------------------------------------


@contextmanager
def _client(account: KimAccount) -> Iterator[AccountManagerClient]:
    try:
        client = amauth.account_manager_client(account)
    except crypto.CredentialDecryptionError as exc:
        # Before anything is sent: like every other failure, one sentence for the page.
        raise AccountManagerError(
            None,
            "credentials",
            _lazy(  # kept untranslated for the password change's row (AccountManagerError.stored)
                "Das gespeicherte Passwort des KIM-Kontos kann nicht entschlüsselt werden (Schlüssel geändert?). "
                "Bitte unter Leitung › Postfächer › KIM-Konto neu eingeben."
            ),
        ) from exc
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class AccountOverview:
    """What the status page shows; a part the provider did not give is None and its reason is in `errors`."""

    info: AccountInfo | None
    limits: AccountLimits | None
    out_of_office: OutOfOffice | None
    errors: tuple[str, ...] = ()


def account_overview(*, account: KimAccount) -> AccountOverview:
    info = limits = note = None
    errors: list[str] = []
    try:
        with _client(account) as client:
            try:
                info = client.account()
            except AccountManagerError as exc:
                errors.append(exc.text)
                if exc.retryable or exc.code in _NOT_SENT:
                    # Down or unauthenticated: the next calls would only repeat the same sentence.
                    raise
            try:
                limits = client.limits()
            except AccountManagerError as exc:
                errors.append(exc.text)
            try:
                note = client.out_of_office()
            except AccountManagerError as exc:
                errors.append(exc.text)
    except AccountManagerError as exc:
        if exc.text not in errors:
            errors.append(exc.text)
    return AccountOverview(info, limits, note, tuple(dict.fromkeys(errors)))


def out_of_office_read(*, account: KimAccount) -> OutOfOffice:
    try:
        with _client(account) as client:
            return client.out_of_office()
    except AccountManagerError as exc:
        raise KimAdminError(exc.text) from exc


def service_information(*, account: KimAccount) -> ServiceInformation:
    try:
        with _client(account) as client:
            return client.service_information()
    except AccountManagerError as exc:
        raise KimAdminError(exc.text) from exc


# --- simple changes: one Account Manager call, then the audit -----------------------------------------------------


def _audit(user: Any, action: str, mailbox: Mailbox, **details: Any) -> None:
    with transaction.atomic():
        audit_record(actor=user, action=action, mailbox=mailbox, **details)


def _change(
    user: Any, mailbox: Mailbox, call: Callable[[AccountManagerClient], object], action: str, **details: Any
) -> None:
    """One change at the provider for an owner or manager, audited once the provider accepted it."""
    require_kim_admin(user, mailbox)
    try:
        with _client(mailbox.account) as client:
            call(client)
    except AccountManagerError as exc:
        if _answer_lost(exc):
            # The provider may have done it (a deregistration, say): the trail keeps who asked for it.
            _audit(user, "kim.change_uncertain", mailbox, change=action, error=exc.code, **details)
        raise _refused(exc) from exc
    _audit(user, action, mailbox, **details)


class OutOfOfficeChanged(KimAdminError):
    """The note at the provider is no longer the one the form was filled from; `current` is what it holds now."""

    def __init__(self, message: str, *, current: OutOfOffice) -> None:
        super().__init__(message)
        self.current = current


def out_of_office_fingerprint(note: OutOfOffice) -> str:
    """A short token for the note as read, so that a save can tell whether someone changed it meanwhile."""
    parts = (note.active, note.start.isoformat() if note.start else "", note.end.isoformat() if note.end else "")
    return hashlib.sha256(json.dumps([*parts, note.message]).encode()).hexdigest()[:32]


def out_of_office_set(
    *,
    user: Any,
    mailbox: Mailbox,
    active: bool,
    start: datetime | None,
    end: datetime | None,
    text: str,
    seen: str = "",
) -> None:
    """The mailbox's automatic reply at the provider. Switching off keeps dates and text there.

    ``seen``: the fingerprint of the note the form was filled from. The provider knows no versions, so two owners
    editing at once would overwrite each other unnoticed; with ``seen`` the note is read first and a changed one is
    refused (OutOfOfficeChanged). Empty when the form could not read the note (then nothing can be compared).
    """
    note = OutOfOffice(active=active, start=start, end=end, message=text)

    def save(client: AccountManagerClient) -> None:
        if seen:
            try:
                current = client.out_of_office()
            except AccountManagerError as exc:
                # Only the reading failed: unlike a failed save, nothing can have changed at the provider.
                raise KimAdminError(f"{exc.text} {_('Es wurde nichts geändert.')}") from exc
            if out_of_office_fingerprint(current) != seen:
                raise OutOfOfficeChanged(
                    _(
                        "Die Abwesenheitsnotiz wurde inzwischen geändert, während Sie sie bearbeitet haben. Ihre "
                        "Eingaben wurden nicht gespeichert und stehen unten noch im Formular; der aktuelle Stand "
                        "beim Anbieter ist darüber zu sehen. Speichern Sie erneut, um ihn zu ersetzen."
                    ),
                    current=current,
                )
        client.set_out_of_office(note)

    _change(
        user,
        mailbox,
        save,
        "kim.out_of_office_set",
        active=active,
        start=start.isoformat() if start else "",
        end=end.isoformat() if end else "",
        characters=len(text),
    )


def data_time_to_live_set(*, user: Any, mailbox: Mailbox, days: int) -> None:
    _change(user, mailbox, lambda client: client.set_data_time_to_live(days), "kim.data_time_to_live_set", days=days)


def kim_version_set(*, user: Any, mailbox: Mailbox, version: str) -> None:
    """The "1.5+" opt-in (the view shows the spec's warning and asks for a confirmation first)."""
    _change(user, mailbox, lambda client: client.set_kim_version(version), "kim.version_set", version=version)


def account_deregister(*, user: Any, mailbox: Mailbox) -> None:
    _change(user, mailbox, lambda client: client.deregister(), "kim.deregistered")


def account_deregistration_revoke(*, user: Any, mailbox: Mailbox) -> None:
    _change(user, mailbox, lambda client: client.revoke_deregistration(), "kim.deregistration_revoked")


# --- the password: the provider and the portal's stored copy change together, or neither --------------------------


LOGIN_TEST_TIMEOUT = 10.0


class LoginTest:
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


def cm_login_test(account: KimAccount, password: str) -> str:
    """Does the Clientmodul (and behind it the provider) accept this password for the account? SMTP AUTH first
    (it never touches the maildrop), POP3 when SMTP cannot tell."""
    for protocol, check in (("smtp", smtp_login_check), ("pop3", pop3_login_check)):
        endpoint = account_endpoint(account, protocol)
        # Capped: a page that settles an open change must not hang for the account's full fetch timeout.
        endpoint = dataclasses.replace(endpoint, password=password, timeout=min(endpoint.timeout, LOGIN_TEST_TIMEOUT))
        try:
            check(endpoint)
        except CmAuthFailed:
            return LoginTest.INVALID
        except Pop3Refused as exc:
            if exc.code == "IN-USE":  # RFC 2449: authenticated, the maildrop is busy (a fetch runs)
                return LoginTest.VALID
            log.info("login test for %s via %s undecided: %s", account.pk, protocol, exc)
        except CmError as exc:
            log.info("login test for %s via %s undecided: %s", account.pk, protocol, exc)
        else:
            return LoginTest.VALID
    return LoginTest.UNKNOWN


def password_change_open(*, account: KimAccount) -> PasswordChange | None:
    return PasswordChange.objects.filter(account=account, state__in=PasswordChange.OPEN).first()


def password_change_last(*, account: KimAccount) -> PasswordChange | None:
    """The account's latest password change, open or settled (the KIM page says how it ended and why)."""
    return PasswordChange.objects.filter(account=account).order_by("-requested_at", "-pk").first()


def password_change(*, user: Any, mailbox: Mailbox, new_password: str) -> PasswordChange:
    """Change the KIM account's password at the provider and in the portal's stored copy together.

    1. The change is written first, both passwords encrypted, in its own transaction (state "pending"): from now
       on nothing can lose the new password, and a second change cannot start (one open change per account).
    2. The Account Manager is asked (setAccount).
    3. Accepted: the new password is stored on the KimAccount and the change is "applied", in one transaction.
       Should that transaction fail, the provider is asked to take the old password back; if even that fails the
       change stays open and is settled by a login test (4).
       Refused (4xx, policy, not reachable before sending): "rejected", nothing changed anywhere.
       Uncertain (timeout, 5xx, connection lost after sending): settled at once by (4).
    4. Settling logs in at the Clientmodul with the new password, then the old one: whichever works is what the
       provider holds, and the portal stores that. When the CM cannot tell either, the change stays "uncertain" and
       every visit of the mailbox's KIM page tries again (password_change_settle).
    """
    require_kim_admin(user, mailbox)
    account = mailbox.account
    try:
        with transaction.atomic():
            locked = KimAccount.objects.select_for_update().get(pk=account.pk)
            if password_change_open(account=locked) is not None:
                raise KimAdminError(
                    _("Eine frühere Passwortänderung ist noch nicht abgeschlossen; sie wird zuerst geklärt.")
                )
            change = PasswordChange.objects.create(
                account=locked,
                requested_by=user,
                new_password_encrypted=crypto.encrypt(new_password),
                old_password_encrypted=locked.password_encrypted,
            )
    except IntegrityError as exc:  # a second tab raced us past the check
        raise KimAdminError(_("Für dieses KIM-Konto läuft bereits eine Passwortänderung.")) from exc
    account.refresh_from_db()
    try:
        with _client(account) as client:
            client.change_password(new_password)
    except AccountManagerError as exc:
        if exc.code in _NOT_SENT or (exc.status is not None and 400 <= exc.status < 500):
            _password_change_close(change, PasswordChange.State.REJECTED, exc.stored, user=user, mailbox=mailbox)
            raise _refused(exc) from exc
        # Timeout, 5xx, a connection lost: the provider may have changed it. The CM knows which one is valid.
        log.warning("password change %s uncertain: %s (%s)", change.pk, exc.code, exc.detail)
        PasswordChange.objects.filter(pk=change.pk).update(state=PasswordChange.State.UNCERTAIN, outcome=exc.stored)
        change.refresh_from_db()
        change = password_change_settle(change=change, user=user)
        if change.state == PasswordChange.State.REJECTED:
            raise KimAdminError(
                exc.text + " " + _("Es wurde nichts geändert; es gilt weiter das bisherige Passwort.")
            ) from exc
        if change.state == PasswordChange.State.UNCERTAIN:
            raise KimAdminError(str(UNCERTAIN_TEXT)) from exc
        return change
    try:
        _password_store(change, user=user, mailbox=mailbox)
    except DatabaseError:
        log.exception("password change %s: accepted by the provider, not stored", change.pk)
        return _password_change_undo(change, user=user, mailbox=mailbox)
    change.refresh_from_db()
    return change


@transaction.atomic
def _password_store(change: PasswordChange, *, user: Any, mailbox: Mailbox, via: str = "account_manager") -> None:
    account = KimAccount.objects.select_for_update().get(pk=change.account_id)
    account.password_encrypted = crypto.encrypt(change.new_password())
    account.save(update_fields=["password_encrypted"])
    PasswordChange.objects.filter(pk=change.pk).update(
        state=PasswordChange.State.APPLIED,
        settled_at=timezone.now(),
        outcome="",
        new_password_encrypted="",
        old_password_encrypted="",
    )
    audit_record(actor=user, action="kim.password_changed", mailbox=mailbox, change=change.pk, settled_by=via)


def _password_change_close(
    change: PasswordChange, state: str, outcome: Stored, *, user: Any, mailbox: Mailbox, via: str = "account_manager"
) -> None:
    with transaction.atomic():
        PasswordChange.objects.filter(pk=change.pk).update(
            state=state,
            settled_at=timezone.now(),
            outcome=outcome,
            new_password_encrypted="",
            old_password_encrypted="",
        )
        audit_record(actor=user, action="kim.password_change_failed", mailbox=mailbox, change=change.pk, settled_by=via)
    change.refresh_from_db()


def _password_change_undo(change: PasswordChange, *, user: Any, mailbox: Mailbox) -> PasswordChange:
    """The provider took the new password but the portal could not store it: ask the provider to take the old one
    back (authenticated with the new one), so both hold the old password again."""
    account = KimAccount.objects.get(pk=change.account_id)
    old = change.old_password()
    try:
        with _client(account) as client:
            client.password = change.new_password()
            client.change_password(old, policy=ServiceInformation())  # the old one was accepted once already
    except AccountManagerError as exc:
        log.warning("password change %s: undo failed (%s); left to the login test", change.pk, exc.code)
        _mark_uncertain(change, N_("Gespeichert werden konnte das neue Passwort nicht; die Klärung folgt.").stored)
        raise KimAdminError(
            _(
                "Der Anbieter hat das neue Passwort übernommen, das Portal konnte es aber nicht speichern. "
                "Die Änderung ist offen und wird beim nächsten Aufruf der Seite per Anmeldetest am Clientmodul "
                "geklärt; bis dahin kann der Abruf scheitern."
            )
        ) from exc
    try:
        _password_change_close(
            change,
            PasswordChange.State.REJECTED,
            N_("Beim Anbieter zurückgesetzt, weil das Portal das neue Passwort nicht speichern konnte.").stored,
            user=user,
            mailbox=mailbox,
            via="undo",
        )
    except DatabaseError:
        # The row stays open ("pending"); the next settle finds the old password valid and closes it.
        log.exception("password change %s: undone at the provider, row not closed", change.pk)
    raise KimAdminError(
        _(
            "Das neue Passwort konnte im Portal nicht gespeichert werden; beim Anbieter wurde das bisherige "
            "Passwort wiederhergestellt. Es wurde nichts geändert, bitte erneut versuchen."
        )
    )


def _mark_uncertain(change: PasswordChange, outcome: Stored) -> None:
    try:
        PasswordChange.objects.filter(pk=change.pk).update(state=PasswordChange.State.UNCERTAIN, outcome=outcome)
    except DatabaseError:
        log.exception("password change %s: could not be marked uncertain (stays pending)", change.pk)


def password_change_settle(*, change: PasswordChange, user: Any = None) -> PasswordChange:
    """Settle an open change by asking the Clientmodul which password is valid now (see password_change). Returns
    the change: "applied" (the new password is stored), "rejected" (the old one stays) or still "uncertain"."""
    if not change.is_open:
        return change
    mailbox = Mailbox.objects.select_related("account").get(account=change.account_id)
    account = mailbox.account
    if cm_login_test(account, change.new_password()) == LoginTest.VALID:
        _password_store(change, user=user, mailbox=mailbox, via="login_test")
    elif cm_login_test(account, change.old_password()) == LoginTest.VALID:
        _password_change_close(
            change,
            PasswordChange.State.REJECTED,
            N_("Der Anbieter hat die Änderung nicht übernommen (Anmeldetest mit dem bisherigen Passwort).").stored,
            user=user,
            mailbox=mailbox,
            via="login_test",
        )
    else:
        _mark_uncertain(
            change, N_("Weder das neue noch das bisherige Passwort ließ sich am Clientmodul prüfen.").stored
        )
    change.refresh_from_db()
    return change


# How long a change stays its request's own business: longer than an Account Manager request plus the login tests
# after it (KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT is 20 s by default, each login test at most 10 s per protocol). A
# "pending" change younger than this may still be at the provider: a login test then finds only the old password and
# would close as "rejected" (wiping both passwords) a change the provider is about to take.
SETTLE_AFTER = timedelta(minutes=3)


def password_change_running(change: PasswordChange, *, now: datetime | None = None) -> bool:
    """Whether *change* may still be waiting for the Account Manager's answer (nobody else settles it then)."""
    return change.state == PasswordChange.State.PENDING and change.requested_at > (now or timezone.now()) - SETTLE_AFTER


UNCERTAIN_TEXT = _lazy(
    "Ob der Anbieter das neue Passwort übernommen hat, ist noch ungewiss: Das Clientmodul konnte es nicht "
    "bestätigen. Die Änderung wird alle paar Minuten und bei jedem Aufruf der Seiten dieses KIM-Kontos erneut "
    "geprüft; das gespeicherte Passwort bleibt bis dahin das bisherige."
)


def password_changes_settle_open(*, user: Any, mailbox: Mailbox) -> str:
    """On each visit of a mailbox's KIM page: settle its open change, if any. Returns a sentence for the page."""
    change = password_change_open(account=mailbox.account)
    if change is None:
        return ""
    if password_change_running(change):
        # Another tab's or a colleague's change is at the provider: its own request settles it.
        return _("Eine Passwortänderung wird gerade ausgeführt; ihr Ergebnis steht hier, sobald sie abgeschlossen ist.")
    change = password_change_settle(change=change, user=user)
    if change.state == PasswordChange.State.APPLIED:
        return _("Die offene Passwortänderung ist geklärt: Der Anbieter hat das neue Passwort, es ist gespeichert.")
    if change.state == PasswordChange.State.REJECTED:
        return _(
            "Die offene Passwortänderung ist geklärt: Der Anbieter hat sie nicht übernommen, es gilt das bisherige."
        )
    return str(UNCERTAIN_TEXT)


# --- registration of a new address ----------------------------------------------------------------------------


_COPIED_FIELDS = [
    f.name
    for f in KimAccount._meta.concrete_fields
    if f.editable and f.name not in {"id", "mailbox", "password_encrypted", "is_active"}
] + ["tls_client_key_encrypted"]


def registration_templates() -> QuerySet[KimAccount]:
    """The house's KIM accounts whose connection settings a new address may take over."""
    return KimAccount.objects.select_related("mailbox").order_by("mailbox__display_name")


def registration_owners(registration: KimRegistration) -> list[Any]:
    from django.contrib.auth import get_user_model

    return list(get_user_model().objects.filter(pk__in=registration.owner_ids, is_active=True).order_by("username"))


def registration_account(registration: KimRegistration) -> KimAccount:
    """The KimAccount the new address will have (unsaved): the template's connection settings, the new address and
    the chosen password."""
    template = registration.template_account
    if template is None:
        raise KimAdminError(_("Das KIM-Konto, dessen Einstellungen übernommen werden sollten, gibt es nicht mehr."))
    account = KimAccount(mailbox=Mailbox(address=registration.address, display_name=registration.display_name))
    for name in _COPIED_FIELDS:
        setattr(account, name, getattr(template, name))
    account.password_encrypted = registration.password_encrypted
    return account


def registration_service_information(*, template: KimAccount) -> ServiceInformation:
    """The provider's rules (password policy, whether a registration code and initial password are needed)."""
    try:
        with _client(template) as client:
            return client.service_information()
    except AccountManagerError as exc:
        raise KimAdminError(exc.text) from exc


@transaction.atomic
def registration_start(
    *,
    user: Any,
    address: str,
    display_name: str,
    kind: str,
    owners: list[Any],
    template: KimAccount,
    reference_id: str,
    initial_password: str,
) -> KimRegistration:
    manage_services.require_manager(user)
    registration = KimRegistration(
        created_by=user,
        address=address,
        display_name=display_name,
        kind=kind,
        owner_ids=[o.pk for o in owners],
        template_account=template,
        step=KimRegistration.Step.PASSWORD,
    )
    registration.set_secret("reference_id", reference_id)
    registration.set_secret("initial_password", initial_password)
    registration.save()
    return registration


@transaction.atomic
def registration_set_password(*, user: Any, registration: KimRegistration, password: str) -> None:
    manage_services.require_manager(user)
    registration.set_secret("password", password)
    registration.step = KimRegistration.Step.VERSION
    registration.save(update_fields=["password_encrypted", "step"])


@transaction.atomic
def registration_set_version(*, user: Any, registration: KimRegistration, kim_version: str) -> None:
    manage_services.require_manager(user)
    registration.kim_version = kim_version
    registration.step = KimRegistration.Step.CONFIRM
    registration.save(update_fields=["kim_version", "step"])


@transaction.atomic
def registration_abandon(*, user: Any, registration: KimRegistration) -> None:
    manage_services.require_manager(user)
    try:
        # Not while a click registers it right now (that holds the row): the secrets are in use.
        locked = KimRegistration.objects.select_for_update(nowait=True).get(pk=registration.pk)
    except DatabaseError as exc:
        raise KimAdminError(_("Die Registrierung wird gerade abgeschickt; bitte einen Moment warten.")) from exc
    if locked.state != KimRegistration.State.DRAFT:
        raise KimAdminError(_("Die Adresse ist beim Anbieter schon registriert; bitte das Postfach anlegen."))
    locked.state = KimRegistration.State.ABANDONED
    locked.wipe_secrets()
    locked.save()
    registration.refresh_from_db()


def _account_is_ours(client: AccountManagerClient) -> bool:
    try:
        client.account()
    except AccountManagerError:
        return False
    return True


@dataclass(frozen=True)
class RegistrationResult:
    mailbox: Mailbox
    checks: list[ConnectionCheck]


def registration_complete(*, user: Any, registration: KimRegistration) -> RegistrationResult:
    """Register the address at the provider (once), then create the portal's mailbox and account through mailbox's
    services, then test the fetch (a login at the Clientmodul with the new password).

    The provider's answer is kept (state "registered") before the portal creates anything: should the creation
    fail, a second click creates the mailbox without registering the address a second time (which would be 409)."""
    manage_services.require_manager(user)
    if registration.state == KimRegistration.State.DRAFT:
        _register_at_provider(user, registration)
        registration.refresh_from_db()
    if registration.state != KimRegistration.State.REGISTERED:
        raise KimAdminError(_("Diese Registrierung ist schon abgeschlossen."))
    owners = registration_owners(registration)
    with transaction.atomic():
        # A second click (or tab) that also found it registered waits here and then finds it done.
        registered = KimRegistration.State.REGISTERED
        if not KimRegistration.objects.select_for_update().filter(pk=registration.pk, state=registered).exists():
            raise KimAdminError(_("Diese Registrierung ist schon abgeschlossen."))
        mailbox = manage_services.mailbox_create(
            user=user,
            address=registration.address,
            display_name=registration.display_name,
            kind=registration.kind,
            account=registration_account(registration),
            owners=owners,
        )
        KimRegistration.objects.filter(pk=registration.pk).update(
            state=KimRegistration.State.DONE, mailbox=mailbox, password_encrypted=""
        )
    mailbox = Mailbox.objects.select_related("account").get(pk=mailbox.pk)
    return RegistrationResult(mailbox, account_test_connection(account=mailbox.account))


def _register_at_provider(user: Any, registration: KimRegistration) -> None:
    """The provider's registration, once: the registration's row stays locked while the provider is asked, so a
    double click or a second tab is refused at once instead of sending the code a second time."""
    account = registration_account(registration)
    failure: AccountManagerError | None = None
    with transaction.atomic():
        try:
            locked = KimRegistration.objects.select_for_update(nowait=True).get(pk=registration.pk)
        except DatabaseError as exc:
            raise KimAdminError(
                _(
                    "Diese Registrierung wird gerade schon abgeschickt (doppelter Klick oder ein anderer Tab). "
                    "Bitte einen Moment warten und die Seite neu laden."
                )
            ) from exc
        if locked.state != KimRegistration.State.DRAFT:
            return  # an earlier click registered it meanwhile
        try:
            with _client(account) as client:
                try:
                    client.register(
                        reference_id=locked.get_secret("reference_id"),
                        initial_password=locked.get_secret("initial_password"),
                        kim_version=locked.kim_version or "1.5",
                    )
                except AccountManagerError as exc:
                    # An earlier attempt whose answer was lost (timeout, 5xx) may have registered the address: then
                    # this one is refused (code used up: 401, or address taken: 409). If the account takes the
                    # chosen password, the address is ours, registered by that attempt, not someone else's.
                    if exc.status not in (401, 409) or not _account_is_ours(client):
                        raise
        except AccountManagerError as exc:
            failure = exc
        else:
            KimRegistration.objects.filter(pk=registration.pk).update(
                state=KimRegistration.State.REGISTERED,
                registered_at=timezone.now(),
                reference_id_encrypted="",
                initial_password_encrypted="",
            )
            audit_record(
                actor=user,
                action="kim.registered",
                address=registration.address,
                kim_version=locked.kim_version or "1.5",
            )
    if failure is not None:
        with transaction.atomic():
            audit_record(
                actor=user, action="kim.registration_failed", address=registration.address, status=failure.status
            )
        raise _refused(failure) from failure
