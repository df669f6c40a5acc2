"""One draft: create, edit, look at (the document inline: pdf.js for PDFs, escaped text otherwise), and its
document and signed result as files. Every look at the document is on the audit trail."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.storage import BlobError, blob_get
from signing import selectors
from signing.forms import DraftForm, ReviewDecisionForm, ReviewRequestForm, WithdrawForm
from signing.models import Draft
from signing.permissions import SIGNER_GONE, can_edit, has_signer_card, sign_refusal
from signing.services.drafts import DraftData, draft_create, draft_document_viewed, draft_update, draft_withdraw
from signing.services.review import can_review, draft_reviewer_candidates, review_refusal, reviewer_candidates
from signing.views.common import chosen_workplace, draft_or_404

# Text shown inline at most (a longer document is cut in the page, never in what is signed).
INLINE_TEXT_LIMIT = 2 * 2**20


def _reviewers(request: AuthenticatedHttpRequest) -> QuerySet[Any]:
    """Who the author may ask to review: qualified reviewers of any mailbox the author sends from (the service
    checks the one chosen against the draft's mailbox)."""
    ids: set[int] = set()
    for mailbox in selectors.sending_mailboxes(request.user):
        ids.update(reviewer_candidates(mailbox, author=request.user).values_list("pk", flat=True))
    return get_user_model().objects.filter(pk__in=ids).order_by("last_name", "first_name", "username")


def _form(request: AuthenticatedHttpRequest, draft: Draft | None = None) -> DraftForm:
    mailboxes = selectors.sending_mailboxes(request.user)
    signers = selectors.signer_choices(mailboxes)
    reviewers = _reviewers(request) if draft is None else None
    if request.method == "POST":
        return DraftForm(
            request.POST, request.FILES, signers=signers, mailboxes=mailboxes, editing=draft, reviewers=reviewers
        )
    initial = {}
    if draft is not None:
        initial = {
            "document_type": draft.document_type,
            "patient_reference": draft.patient_reference,
            "signer": draft.signer_id,
            "mailbox": draft.mailbox_id,
            "recipients": "\n".join(draft.recipients),
            "subject": draft.subject,
            "body": draft.body,
            "version": draft.version,
        }
    return DraftForm(initial=initial, signers=signers, mailboxes=mailboxes, editing=draft, reviewers=reviewers)


def _data(form: DraftForm) -> DraftData:
    d = form.cleaned_data
    return DraftData(
        document_type=d["document_type"],
        patient_reference=d["patient_reference"].strip(),
        signer=d["signer"],
        mailbox=d["mailbox"],
        subject=d["subject"].strip(),
        body=d["body"],
        recipients=d["recipients"],
    )


@require_http_methods(["GET", "POST"])
def draft_create_view(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = _form(request)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            assert form.checked_document is not None
            try:
                draft = draft_create(
                    author=request.user,
                    data=_data(form),
                    document=form.checked_document,
                    reviewer=form.cleaned_data.get("reviewer"),
                )
            except NotAllowed as exc:
                form.add_error("mailbox", exc.message)
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                if draft.review_state == Draft.Review.PENDING:
                    messages.success(request, _("Entwurf gespeichert. Er liegt jetzt zur Prüfung vor."))
                else:
                    messages.success(request, _("Entwurf gespeichert. Er liegt jetzt zur Signatur vor."))
                return redirect("signing:draft-detail", pk=draft.pk)
        status = 422
    return render(request, "signing/draft_form.html", {"form": form, "draft": None}, status=status)


@require_http_methods(["GET", "POST"])
def draft_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = draft_or_404(request.user, pk)
    if not can_edit(request.user, draft):
        if draft.is_open:
            raise PermissionDenied
        messages.error(
            request,
            _("Der Entwurf wird gerade signiert, ist signiert oder zurückgezogen und kann nicht mehr geändert werden."),
        )
        return redirect("signing:draft-detail", pk=draft.pk)
    form = _form(request, draft)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                draft_update(
                    user=request.user,
                    draft=draft,
                    version=form.cleaned_data.get("version") or 0,
                    data=_data(form),
                    document=form.checked_document,
                    comment=form.cleaned_data.get("comment") or "",
                )
            except Conflict as exc:
                form.add_error(None, exc.message)
                status = 409
            except PortalError as exc:
                form.add_error(None, exc.message)
                status = 422
            else:
                messages.success(request, _("Änderungen gespeichert."))
                return redirect("signing:draft-detail", pk=draft.pk)
        else:
            status = 422
    return render(request, "signing/draft_form.html", {"form": form, "draft": draft}, status=status)


@require_GET
def draft_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = draft_or_404(request.user, pk)
    text = None
    if not draft.is_pdf:
        # Shown escaped in <pre> (the template escapes); viewing it is viewing the document: audited.
        try:
            raw = blob_get(draft.sha256)
        except BlobError:
            raw = None
        if raw is not None:
            text = raw[:INLINE_TEXT_LIMIT].decode("utf-8", "replace")
            draft_document_viewed(user=request.user, draft=draft)
    has_card = has_signer_card(request.user)
    workplaces = list(selectors.workplace_choices())
    editable = can_edit(request.user, draft)
    reviewing = draft.is_open and draft.review_state == Draft.Review.PENDING and can_review(request.user, draft)
    # The author or signer may ask for a review (again, or of another reviewer) unless this version is approved.
    may_request = editable and not (
        draft.review_state == Draft.Review.APPROVED and draft.approved_version == draft.version
    )
    # A signer who left the department (or lost the eHBA) no longer signs it: the draft waits for another choice.
    signer_gone = ""
    if draft.is_open and draft.signer_id != request.user.pk and selectors.drafts_signer_gone([draft]):
        signer_gone = SIGNER_GONE % {"name": draft.signer.get_full_name() or draft.signer.get_username()}
    context = {
        "draft": draft,
        "signer_gone": signer_gone,
        "text": text,
        "text_cut": text is not None and draft.size > INLINE_TEXT_LIMIT,
        "can_edit": editable,
        "sign_refusal": sign_refusal(request.user, draft, has_card=has_card) or review_refusal(draft),
        "reviewing": reviewing,
        "decision_form": ReviewDecisionForm(initial={"version": draft.version}) if reviewing else None,
        "request_form": ReviewRequestForm(
            initial={"version": draft.version, "reviewer": draft.reviewer_id},
            reviewers=draft_reviewer_candidates(draft),
        )
        if may_request
        else None,
        "withdraw_form": WithdrawForm() if editable else None,
        "last_return": selectors.last_return(draft),
        "steps": list(selectors.review_steps(draft)),
        "signature": selectors.signature_get_for_user(request.user, draft),
        "workplaces": workplaces,
        "workplace": chosen_workplace(request, workplaces),
    }
    return render(request, "signing/draft_detail.html", context)


@require_POST
def draft_withdraw_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Take the draft back (author or signer): it leaves the queue and the review; its history stays."""
    draft = draft_or_404(request.user, pk)
    form = WithdrawForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        draft_withdraw(user=request.user, draft=draft, reason=reason)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Entwurf zurückgezogen. Er wird nicht signiert."))
    return redirect("signing:draft-detail", pk=draft.pk)


def _file(data: bytes, *, filename: str, content_type: str, inline: bool) -> FileResponse:
    response = FileResponse(BytesIO(data), as_attachment=not inline, filename=filename, content_type=content_type)
    # Served to our own viewer only (pdf.js fetches it); never rendered by the browser in a page of ours.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response._csp_exempt = True  # type: ignore[attr-defined]  # django-csp's opt-out flag, unknown to the stubs
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def draft_document(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """The document's bytes (the PDF viewer loads them; `?download=1` saves them). The version in the URL must be
    the current one: a stale page gets 409 instead of another document than it names."""
    draft = draft_or_404(request.user, pk)
    version = request.GET.get("v", "")
    if version and version != str(draft.version):
        return HttpResponse(
            _("Der Entwurf wurde inzwischen geändert. Bitte laden Sie die Seite neu."),
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    try:
        data = blob_get(draft.sha256)
    except BlobError:
        return HttpResponse(
            _("Das Dokument ist beschädigt oder fehlt (Prüfsumme stimmt nicht)."),
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    download = request.GET.get("download") == "1"
    draft_document_viewed(user=request.user, draft=draft, download=download)
    content_type = draft.mime_type + ("; charset=utf-8" if draft.mime_type.startswith("text/") else "")
    return _file(data, filename=draft.filename, content_type=content_type, inline=not download)


@require_GET
def draft_signed(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """The signed result: the signed PDF (PAdES) or the detached signature (.p7s)."""
    draft = draft_or_404(request.user, pk)
    signature = selectors.signature_get_for_user(request.user, draft)
    if signature is None:
        return HttpResponse(_("Keine Signatur vorhanden."), status=404, content_type="text/plain; charset=utf-8")
    try:
        data = blob_get(signature.sha256)
    except BlobError:
        return HttpResponse(
            _("Die Signatur ist beschädigt oder fehlt."), status=500, content_type="text/plain; charset=utf-8"
        )
    draft_document_viewed(user=request.user, draft=draft, version=signature.document_version, download=True)
    content_type = "application/pdf" if signature.format == signature.Format.PADES else "application/pkcs7-signature"
    return _file(data, filename=signature.download_name, content_type=content_type, inline=False)


__all__ = [
    "draft_create_view",
    "draft_detail",
    "draft_document",
    "draft_edit",
    "draft_signed",
    "draft_withdraw_view",
    "has_signer_card",
]
