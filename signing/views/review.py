"""Review before signature: the reviewer's list (approve several at once), approve / return / ask for a review
on a draft, a draft's versions (each viewable, any two compared: metadata and, for text documents, the text),
and the managers' page of which document types each department has reviewed.

Every look at a version's document is on the audit trail, as every look at the current one."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.storage import BlobError, blob_get
from signing import selectors
from signing.doctypes import document_type_choices, document_type_label
from signing.forms import ReviewDecisionForm, ReviewManyForm, ReviewRequestForm, ReviewRuleForm
from signing.models import Draft, DraftVersion, ReviewRule
from signing.services.drafts import draft_document_viewed
from signing.services.review import (
    draft_reviewer_candidates,
    review_approve,
    review_approve_many,
    review_request,
    review_return,
    review_rule_set,
)
from signing.views.common import draft_or_404
from signing.views.drafts import INLINE_TEXT_LIMIT, _file
from signing.views.manage import manager_required

# Documents compared line by line up to this size each (a longer one is compared by its digest only).
DIFF_LIMIT = 512 * 1024


def _errors(form: Any) -> str:
    return " ".join(str(e) for errs in form.errors.values() for e in errs)


@require_http_methods(["GET", "POST"])
def review_queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Drafts waiting for the user's review; the selected ones are approved together at the shown versions."""
    if request.method == "POST":
        form = ReviewManyForm(request.POST)
        if not form.is_valid():
            messages.error(request, _errors(form))
        else:
            try:
                approved = review_approve_many(user=request.user, selected=form.selected)
            except PortalError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request,
                    _("%(n)s Entwürfe freigegeben. Sie können jetzt signiert werden.") % {"n": len(approved)}
                    if len(approved) != 1
                    else _("Entwurf freigegeben. Er kann jetzt signiert werden."),
                )
        return redirect("signing:review-queue")
    drafts = list(selectors.review_list_for_user(request.user)[:500])
    return render(request, "signing/review_queue.html", {"drafts": drafts})


def _decide(request: AuthenticatedHttpRequest, pk: int, decide: Callable[..., Draft], done: str) -> HttpResponse:
    """Approve or return (``decide``) the version the form carries; the outcome as a message on the draft page."""
    draft = draft_or_404(request.user, pk)
    form = ReviewDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _errors(form))
        return redirect("signing:draft-detail", pk=draft.pk)
    try:
        decide(
            user=request.user,
            draft=draft,
            version=form.cleaned_data["version"],
            comment=form.cleaned_data["comment"],
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("signing:draft-detail", pk=draft.pk)


@require_POST
def review_approve_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, review_approve, _("Freigegeben: Diese Fassung kann jetzt signiert werden."))


@require_POST
def review_return_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _decide(
        request, pk, review_return, _("Zurückgegeben: Die Verfasserin oder der Verfasser ist benachrichtigt.")
    )


@require_POST
def review_request_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = draft_or_404(request.user, pk)
    form = ReviewRequestForm(request.POST, reviewers=draft_reviewer_candidates(draft))
    if not form.is_valid():
        messages.error(request, _errors(form))
    else:
        try:
            review_request(
                user=request.user,
                draft=draft,
                version=form.cleaned_data["version"],
                reviewer=form.cleaned_data["reviewer"],
                comment=form.cleaned_data["comment"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Zur Prüfung vorgelegt."))
    return redirect("signing:draft-detail", pk=draft.pk)


# --- Versions -------------------------------------------------------------------------------------------------


@require_GET
def draft_versions_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The draft's history: every version (who, when, what changed) and every review step."""
    draft = draft_or_404(request.user, pk)
    versions = list(selectors.draft_versions(draft))
    history: list[tuple[Any, str, Any]] = [(v.created_at, "version", v) for v in versions]
    history += [(s.created_at, "step", s) for s in selectors.review_steps(draft)]
    history.sort(key=lambda row: (row[0], 0 if row[1] == "version" else 1))
    numbers = [v.number for v in versions]
    context = {
        "draft": draft,
        "versions": versions,
        "history": [{"kind": kind, "item": item} for _at, kind, item in reversed(history)],
        "compare_a": numbers[-2] if len(numbers) > 1 else None,
        "compare_b": numbers[-1] if numbers else None,
    }
    return render(request, "signing/review_versions.html", context)


def _version_or_404(draft: Draft, number: int) -> DraftVersion:
    try:
        return selectors.draft_version_get(draft, number)
    except DraftVersion.DoesNotExist as exc:
        raise Http404 from exc


def _text_of(version: DraftVersion) -> str | None:
    try:
        raw = blob_get(version.sha256)
    except BlobError:
        return None
    return raw[:INLINE_TEXT_LIMIT].decode("utf-8", "replace")


@require_GET
def version_detail(request: AuthenticatedHttpRequest, pk: int, number: int) -> HttpResponse:
    draft = draft_or_404(request.user, pk)
    version = _version_or_404(draft, number)
    text = None
    if not version.is_pdf:
        text = _text_of(version)
        if text is not None:
            draft_document_viewed(user=request.user, draft=draft, version=version.number)
    context = {
        "draft": draft,
        "version": version,
        "text": text,
        "text_cut": text is not None and version.size > INLINE_TEXT_LIMIT,
        "is_current": version.number == draft.version,
    }
    return render(request, "signing/review_version.html", context)


@require_GET
def version_document(request: AuthenticatedHttpRequest, pk: int, number: int) -> HttpResponseBase:
    """An earlier (or the current) version's document bytes: for the PDF viewer, or `?download=1`."""
    draft = draft_or_404(request.user, pk)
    version = _version_or_404(draft, number)
    try:
        data = blob_get(version.sha256)
    except BlobError:
        return HttpResponse(
            _("Das Dokument ist beschädigt oder fehlt (Prüfsumme stimmt nicht)."),
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    download = request.GET.get("download") == "1"
    draft_document_viewed(user=request.user, draft=draft, version=version.number, download=download)
    content_type = version.mime_type + ("; charset=utf-8" if version.mime_type.startswith("text/") else "")
    return _file(data, filename=version.filename, content_type=content_type, inline=not download)


@dataclass(frozen=True)
class FieldDiff:
    label: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


def _person(user: Any) -> str:
    return str(user.get_full_name() or user.get_username())


def _meta(v: DraftVersion) -> list[tuple[str, str]]:
    return [
        (_("Dokumenttyp"), document_type_label(v.document_type)),
        (_("Patient"), v.patient_reference),
        (_("Unterzeichner"), _person(v.signer)),
        (_("Absender"), f"{v.mailbox.display_name} <{v.mailbox.address}>"),
        (_("Empfänger"), ", ".join(v.recipients)),
        (_("Betreff"), v.subject),
        (_("Nachrichtentext"), v.body),
        (_("Dateiname"), v.filename),
        (_("Dateityp"), v.mime_type),
        (_("Größe (Bytes)"), str(v.size)),
        (_("SHA-256 des Dokuments"), v.sha256),
    ]


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "same", "hunk"
    text: str


def _diff_lines(old: str, new: str) -> list[DiffLine]:
    lines: list[DiffLine] = []
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3)
    for line in diff:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            lines.append(DiffLine("add", line[1:]))
        elif line.startswith("-"):
            lines.append(DiffLine("del", line[1:]))
        else:
            lines.append(DiffLine("same", line[1:]))
    return lines


@require_GET
def version_compare(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Two versions side by side: the metadata field by field and, when both documents are text, the lines
    removed and added. Reading the compared documents is reading both versions: audited."""
    draft = draft_or_404(request.user, pk)
    try:
        a_number, b_number = int(request.GET.get("a", "")), int(request.GET.get("b", ""))
    except ValueError as exc:
        raise Http404 from exc
    if a_number > b_number:
        a_number, b_number = b_number, a_number
    a, b = _version_or_404(draft, a_number), _version_or_404(draft, b_number)
    fields = [FieldDiff(label, old, new) for (label, old), (_l, new) in zip(_meta(a), _meta(b), strict=True)]
    same_document = a.sha256 == b.sha256
    text_diff: list[DiffLine] | None = None
    too_big = False
    if not same_document and not a.is_pdf and not b.is_pdf:
        if a.size > DIFF_LIMIT or b.size > DIFF_LIMIT:
            too_big = True
        else:
            old, new = _text_of(a), _text_of(b)
            if old is not None and new is not None:
                draft_document_viewed(user=request.user, draft=draft, version=a.number)
                draft_document_viewed(user=request.user, draft=draft, version=b.number)
                text_diff = _diff_lines(old, new)
    context = {
        "draft": draft,
        "a": a,
        "b": b,
        "fields": fields,
        "same_document": same_document,
        "text_diff": text_diff,
        "too_big": too_big,
        "numbers": list(selectors.draft_versions(draft).values_list("number", flat=True)),
    }
    return render(request, "signing/review_compare.html", context)


# --- Rules (managers) -----------------------------------------------------------------------------------------


@manager_required
@require_http_methods(["GET", "POST"])
def review_rules(request: AuthenticatedHttpRequest) -> HttpResponse:
    mailboxes = selectors.department_mailboxes()
    form = ReviewRuleForm(request.POST or None, mailboxes=mailboxes)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                changed = review_rule_set(
                    manager=request.user,
                    mailbox=form.cleaned_data["mailbox"],
                    document_type=form.cleaned_data["document_type"],
                    required=True,
                )
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                if changed:
                    messages.success(request, _("Prüfregel gespeichert."))
                else:
                    messages.info(request, _("Diese Prüfregel gibt es schon."))
                return redirect("signing:review-rules")
        status = 422
    context = {"form": form, "rules": list(selectors.review_rules()), "types": document_type_choices()}
    return render(request, "signing/review_rules.html", context, status=status)


@manager_required
@require_POST
def review_rule_remove(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(ReviewRule.objects.select_related("mailbox"), pk=pk)
    try:
        review_rule_set(manager=request.user, mailbox=rule.mailbox, document_type=rule.document_type, required=False)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Prüfregel entfernt."))
    return redirect("signing:review-rules")


__all__ = [
    "draft_versions_view",
    "review_approve_view",
    "review_queue",
    "review_request_view",
    "review_return_view",
    "review_rule_remove",
    "review_rules",
    "version_compare",
    "version_detail",
    "version_document",
]
