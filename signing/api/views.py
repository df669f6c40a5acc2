"""The KIS API's HTTP views (JSON; documented in openapi.yaml): token-authenticated only — no session, so no
CSRF either (a browser's cookie opens nothing here) — and every refusal one JSON shape with a German `detail` and
a stable `code`.

Thin like every view: parse (signing.api.validation), call one service (signing.api.services), answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import override
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from kimportal.errors import PortalError
from mailbox.storage import BlobError, blob_get
from signing.api import tokens
from signing.api.errors import ApiError
from signing.api.services import (
    Caller,
    kis_draft_read,
    kis_draft_replace,
    kis_draft_submit,
    kis_draft_withdraw,
    kis_request_refused,
    kis_token_used,
)
from signing.api.validation import (
    document_id_check,
    expected_version_parse,
    max_request_bytes,
    parse_json,
    reason_parse,
    submission_parse,
)
from signing.models import Draft, KisDraft, KisToken, Signature
from signing.texts import german

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=HttpResponseBase)

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"
# Small bodies (withdraw) have no document.
SMALL_BODY_BYTES = 64 * 1024


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.as_json(), status=error.status, json_dumps_params={"ensure_ascii": False})
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="kis"'
    if error.status == 429:
        response["Retry-After"] = "60"
    return _private(response)


def _private(response: R) -> R:
    response["Cache-Control"] = "no-store"
    return response


def json_response(body: dict[str, Any], status: int = 200, **headers: str) -> JsonResponse:
    response = JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    _private(response)
    return response


def authenticate(request: HttpRequest) -> Caller:
    """The client system behind the request's bearer token. Only the token counts: a signed-in browser session
    sent along is ignored."""
    header = request.headers.get("Authorization", "")
    scheme, _sep, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "token_missing", _("Anmeldung fehlt: Authorization: Bearer <Token> mitsenden."))
    token = KisToken.objects.select_related("client").filter(token_hash=tokens.token_hash(value.strip())).first()
    if token is None:
        raise ApiError(401, "token_invalid", _("Das Token ist ungültig."))
    if token.revoked_at is not None:
        raise ApiError(401, "token_revoked", _("Das Token wurde widerrufen."))
    if token.is_expired():
        raise ApiError(
            401,
            "token_expired",
            _("Das Token ist am %(date)s abgelaufen. Bitte in der KIS-Anbindung ein neues erzeugen lassen.")
            % {"date": date_format(timezone.localtime(token.expires_at), "SHORT_DATE_FORMAT")},
        )
    if not token.client.is_active:
        raise ApiError(401, "client_inactive", _("Diese KIS-Anbindung ist abgeschaltet."))
    return Caller(client=token.client, token=token)


def rate_limit() -> int:
    return int(getattr(settings, "KIMPORTAL_KIS_RATE_LIMIT_PER_MINUTE", 600))


def _throttle(caller: Caller) -> None:
    """A fixed window per client and minute in the cache (per process unless the cache is shared): a runaway
    KIS loop slows down instead of filling the queue."""
    limit = rate_limit()
    if limit <= 0:
        return
    key = f"kisapi:rate:{caller.client.pk}:{int(timezone.now().timestamp() // 60)}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:
        count = 1
    if count > limit:
        raise ApiError(
            429,
            "rate_limited",
            _("Zu viele Anfragen; höchstens %(limit)s je Minute. Bitte später erneut versuchen.") % {"limit": limit},
        )


Handler = Callable[..., HttpResponseBase]


def api_view(operation: str, methods: tuple[str, ...]) -> Callable[[Handler], Handler]:
    """Token, method and rate limit checked, ApiError rendered, refusals audited (with a valid token)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            caller: Caller | None = None
            # The API speaks German (its texts are for the hospital's IT), whatever the client's Accept-Language.
            with override("de"):
                try:
                    caller = authenticate(request)
                    if request.method not in methods:
                        raise ApiError(
                            405,
                            "method_not_allowed",
                            _("Die Methode %(method)s ist hier nicht erlaubt.") % {"method": request.method},
                        )
                    _throttle(caller)
                    kis_token_used(caller.token)
                    try:
                        return handler(request, caller, **kwargs)
                    except PortalError as exc:
                        # A rule of the draft services the checks above did not foresee: refused as content.
                        raise ApiError(422, "rejected", exc.message) from exc
                except ApiError as error:
                    # Throttled calls are not recorded one by one: a runaway loop must not fill the trail either.
                    if caller is not None and error.status != 429:
                        kis_request_refused(
                            caller=caller, operation=operation, error=error, document_id=kwargs.get("document_id", "")
                        )
                    elif caller is None:
                        logger.info("KIS API: %s refused (%s)", operation, error.code)
                    response = error_response(error)
                    if error.status == 405:
                        response["Allow"] = ", ".join(methods)
                    return response

        return csrf_exempt(login_not_required(view))

    return decorate


def _body(request: HttpRequest, limit: int) -> dict[str, Any]:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", _("Erwartet wird Content-Type: application/json."))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ApiError(413, "request_too_large", _("Die Anfrage ist zu groß."))
    # Read directly (request.body stops at DATA_UPLOAD_MAX_MEMORY_SIZE, far below a 25 MB letter in base64).
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "request_too_large", _("Die Anfrage ist zu groß."))
    return parse_json(raw)


def _link(caller: Caller, document_id: str) -> KisDraft:
    """The caller's own draft under its document id; another client's (or one moved out of the caller's scope)
    is not found."""
    link = (
        KisDraft.objects.select_related("draft", "draft__author", "draft__signer", "draft__mailbox")
        .filter(client=caller.client, document_id=document_id)
        .first()
    )
    if link is None or not caller.client.mailboxes.filter(pk=link.draft.mailbox_id).exists():
        raise ApiError(
            404, "not_found", _("Unter der Dokument-ID „%(id)s“ gibt es keinen Entwurf.") % {"id": document_id}
        )
    return link


def _signature(draft: Draft) -> Signature | None:
    return draft.signatures.filter(verified_at__isnull=False, verification_error="").order_by("-signed_at").first()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def draft_json(link: KisDraft) -> dict[str, Any]:
    draft = link.draft
    signer_card = getattr(draft.signer, "signer_card", None)
    signature = _signature(draft) if draft.state in (Draft.State.SIGNED, Draft.State.SENT) else None
    signed: dict[str, Any] | None = None
    if signature is not None:
        signed = {
            "format": signature.format,
            "filename": signature.download_name,
            "mime_type": _signed_mime(signature),
            "size": signature.size,
            "sha256": signature.sha256,
            "document_version": signature.document_version,
            "signed_at": _iso(signature.signed_at),
            "url": reverse("kisapi:draft-signed", kwargs={"document_id": link.document_id}),
        }
    return {
        "id": draft.pk,
        "document_id": link.document_id,
        "version": draft.version,
        "state": draft.state,
        "state_label": str(draft.get_state_display()),
        "review_state": draft.review_state,
        "review_label": str(draft.get_review_state_display()),
        "document_type": draft.document_type,
        "mailbox": draft.mailbox.address,
        "author": draft.author.get_username(),
        "signer": {
            "username": draft.signer.get_username(),
            "telematik_id": signer_card.telematik_id if signer_card is not None else None,
        },
        "patient_reference": draft.patient_reference,
        "subject": draft.subject,
        "recipients": list(draft.recipients),
        "document": {
            "filename": draft.filename,
            "mime_type": draft.mime_type,
            "size": draft.size,
            "sha256": draft.sha256,
        },
        # A string in German, the API's documented language (the row keeps it untranslated, kimportal.texts).
        "last_error": german(draft.last_error_scoped),
        "created_at": _iso(draft.created_at),
        "updated_at": _iso(draft.updated_at),
        "signed_at": _iso(draft.signed_at),
        "signed": signed,
    }


def _signed_mime(signature: Signature) -> str:
    return "application/pdf" if signature.format == Signature.Format.PADES else "application/pkcs7-signature"


def _location(link: KisDraft) -> str:
    return reverse("kisapi:draft", kwargs={"document_id": link.document_id})


# --- the operations ------------------------------------------------------------------------------------------------


@api_view("submit", ("POST",))
def drafts(request: HttpRequest, caller: Caller) -> HttpResponseBase:
    body = _body(request, max_request_bytes())
    submission = submission_parse(caller.client, body)
    link, created = kis_draft_submit(caller=caller, submission=submission)
    link.draft.refresh_from_db()
    return json_response(draft_json(link), status=201 if created else 200, Location=_location(link))


@api_view("draft", ("GET", "PUT"))
def draft(request: HttpRequest, caller: Caller, document_id: str) -> HttpResponseBase:
    link = _link(caller, document_id)
    if request.method == "GET":
        kis_draft_read(caller=caller, link=link)
        return json_response(draft_json(link))
    body = _body(request, max_request_bytes())
    submission = submission_parse(caller.client, body, document_id=document_id)
    link, _changed = kis_draft_replace(
        caller=caller, link=link, submission=submission, expected_version=expected_version_parse(body)
    )
    link.draft.refresh_from_db()
    return json_response(draft_json(link))


@api_view("withdraw", ("POST",))
def draft_withdraw_view(request: HttpRequest, caller: Caller, document_id: str) -> HttpResponseBase:
    link = _link(caller, document_id)
    body: dict[str, Any] = {}
    if request.META.get("CONTENT_LENGTH") not in (None, "", "0"):
        body = _body(request, SMALL_BODY_BYTES)
    link = kis_draft_withdraw(caller=caller, link=link, reason=reason_parse(body))
    link.draft.refresh_from_db()
    return json_response(draft_json(link))


@api_view("signed", ("GET",))
def draft_signed(request: HttpRequest, caller: Caller, document_id: str) -> HttpResponseBase:
    """The signed result: the signed PDF (PAdES) or the detached signature (.p7s, CAdES; the document is the one
    the client submitted, see document.sha256)."""
    link = _link(caller, document_id)
    signature = _signature(link.draft) if link.draft.state in (Draft.State.SIGNED, Draft.State.SENT) else None
    if signature is None:
        raise ApiError(
            409,
            "not_signed",
            _("Der Entwurf ist noch nicht signiert (Status: %(state)s).") % {"state": link.draft.get_state_display()},
        )
    try:
        data = blob_get(signature.sha256)
    except BlobError as exc:
        raise ApiError(500, "storage_error", _("Die Signatur ist beschädigt oder fehlt.")) from exc
    kis_draft_read(caller=caller, link=link, signed=True, version=signature.document_version)
    response = FileResponse(
        BytesIO(data), as_attachment=True, filename=signature.download_name, content_type=_signed_mime(signature)
    )
    response["X-Document-Version"] = str(signature.document_version)
    return _private(response)


@api_view("unknown", ("GET", "POST", "PUT", "DELETE", "PATCH"))
def not_found(request: HttpRequest, caller: Caller, rest: str = "") -> HttpResponseBase:
    raise ApiError(404, "not_found", _("Diese Adresse gibt es in der KIS-Schnittstelle nicht."))


@login_not_required
@require_safe
def openapi(request: HttpRequest) -> HttpResponse:
    """The API's description, public like any product manual (it holds no secret)."""
    response = HttpResponse(OPENAPI_FILE.read_bytes(), content_type="application/yaml; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


__all__ = ["document_id_check", "draft", "draft_signed", "draft_withdraw_view", "drafts", "not_found", "openapi"]
