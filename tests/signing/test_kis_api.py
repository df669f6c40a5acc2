"""The KIS API: submit, replay, replace, withdraw, read, download the signed result — every answer checked against
the OpenAPI file — and every way a call can be refused, with nothing stored."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from audit.models import AuditEvent
from mailbox.models import Membership
from mailbox.storage import blob_get, blob_put
from signing.api.services import Caller, kis_client_create, kis_token_revoke
from signing.api.tokens import token_hash
from signing.models import Draft, DraftVersion, KisDraft, KisToken, Signature
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import LETTER_TEXT, make_pdf
from tests.signing.factories import SignerCardFactory
from tests.signing.kis import Api, kis_issued, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(issued) -> Api:
    return Api(Client(), issued.token)


def _nothing_stored() -> None:
    assert not Draft.objects.exists()
    assert not KisDraft.objects.exists()


# --- the calls -----------------------------------------------------------------------------------------------------


def test_submit_creates_a_draft_from_the_kis(api, issued, physician, assistant, mailbox):
    response = api.submit(submission("KIS-1"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == "/api/kis/v1/drafts/KIS-1"
    assert body["document_id"] == "KIS-1" and body["version"] == 1
    assert body["state"] == "draft" and body["review_state"] == "none"
    assert body["signer"] == {"username": "aerztin", "telematik_id": "1-HBA-Sommer-0001"}
    draft = Draft.objects.get()
    assert (draft.source, draft.author, draft.signer, draft.mailbox) == ("kis", assistant, physician, mailbox)
    assert draft.external_id == f"{issued.client.pk}:KIS-1"
    assert blob_get(draft.sha256) == make_pdf("Entlassbrief")
    assert draft.recipients == ["praxis@praxis-test.kim.telematik-test"]
    # The channel is named in the version history and on the trail, with the client's name.
    assert DraftVersion.objects.get(draft=draft).via == "KIS: KIS Kardiologie"
    event = AuditEvent.objects.get(action="signing.kis_draft_submitted")
    assert event.details["client"] == "KIS Kardiologie" and event.details["document_id"] == "KIS-1"
    assert event.details["token"] == issued.token[:12]


def test_a_replayed_submission_returns_the_existing_draft(api):
    first = api.submit(submission("KIS-1"))
    again = api.submit(submission("KIS-1"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["version"] == 1
    assert Draft.objects.count() == 1 and DraftVersion.objects.count() == 1
    assert AuditEvent.objects.filter(action="signing.kis_draft_replayed").count() == 1


def test_other_content_under_a_used_document_id_is_409_and_changes_nothing(api):
    api.submit(submission("KIS-1"))
    response = api.submit(submission("KIS-1", subject="Ganz anderer Brief"))
    assert response.status_code == 409
    assert response.json()["code"] == "document_id_conflict"
    assert "PUT" in response.json()["detail"]
    draft = Draft.objects.get()
    assert draft.subject == "Entlassbrief Herr Muster" and draft.version == 1
    refused = AuditEvent.objects.get(action="signing.kis_request_refused")
    assert refused.details["code"] == "document_id_conflict" and refused.details["client"] == "KIS Kardiologie"


def test_the_same_document_id_from_two_clients_is_two_drafts(api, manager, mailbox):
    other = kis_client_create(manager=manager, name="Labor", mailboxes=[mailbox])
    assert api.submit(submission("KIS-1")).status_code == 201
    second = Api(Client(), other.token)
    assert second.submit(submission("KIS-1", subject="Laborbefund")).status_code == 201
    assert Draft.objects.count() == 2
    # … and each reads only its own.
    assert api.get("KIS-1").json()["subject"] == "Entlassbrief Herr Muster"
    assert second.get("KIS-1").json()["subject"] == "Laborbefund"


def test_replace_makes_a_new_version_and_the_same_content_again_changes_nothing(api):
    api.submit(submission("KIS-1"))
    new_pdf = base64.b64encode(make_pdf("Entlassbrief, korrigiert")).decode()
    body = submission("KIS-1", subject="Entlassbrief (korrigiert)")
    body["document"] = {"filename": "brief-v2.pdf", "content_base64": new_pdf}
    response = api.replace("KIS-1", body)
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2 and response.json()["subject"] == "Entlassbrief (korrigiert)"
    draft = Draft.objects.get()
    assert draft.version == 2 and blob_get(draft.sha256) == make_pdf("Entlassbrief, korrigiert")
    assert DraftVersion.objects.filter(draft=draft).count() == 2
    assert DraftVersion.objects.get(draft=draft, number=2).via == "KIS: KIS Kardiologie"
    again = api.replace("KIS-1", body)
    assert again.status_code == 200 and again.json()["version"] == 2
    stale = api.replace("KIS-1", {**submission("KIS-1", subject="Dritte Fassung"), "expected_version": 1})
    assert stale.status_code == 409 and stale.json()["code"] == "version_conflict"
    assert Draft.objects.get().version == 2


def test_replace_puts_an_approved_draft_back_into_review(api, mailbox, physician, manager):
    from django.contrib.auth.models import Permission

    from signing.services.review import review_approve, review_rule_set

    physician.user_permissions.add(Permission.objects.get(codename="review_draft"))
    review_rule_set(manager=manager, mailbox=mailbox, document_type="earztbrief", required=True)
    created = api.submit(submission("KIS-1"))
    assert created.json()["review_state"] == "pending"
    draft = Draft.objects.get()
    assert draft.reviewer == physician
    review_approve(user=draft.reviewer, draft=draft, version=draft.version)
    assert api.get("KIS-1").json()["review_state"] == "approved"
    response = api.replace("KIS-1", submission("KIS-1", subject="Nach Freigabe geändert"))
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["review_state"]) == (2, "pending")


def test_replace_refused_once_signing_or_signed(api):
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNING)
    response = api.replace("KIS-1", submission("KIS-1", subject="Zu spät"))
    assert response.status_code == 409 and response.json()["code"] == "not_editable"
    assert Draft.objects.get().subject == "Entlassbrief Herr Muster"


def test_replace_keeps_the_author(api, mailbox):
    other = UserFactory(username="andere")
    MembershipFactory(mailbox=mailbox, user=other, role=Membership.Role.PROCESSOR)
    api.submit(submission("KIS-1"))
    response = api.replace("KIS-1", submission("KIS-1", author="andere", subject="x"))
    assert response.status_code == 422 and response.json()["code"] == "author_mismatch"


def test_withdraw_takes_the_draft_out_and_again_changes_nothing(api):
    api.submit(submission("KIS-1"))
    response = api.withdraw("KIS-1", reason="Patient verlegt")
    assert response.status_code == 200 and response.json()["state"] == "withdrawn"
    assert Draft.objects.get().state == Draft.State.WITHDRAWN
    assert api.withdraw("KIS-1").status_code == 200
    assert AuditEvent.objects.filter(action="signing.kis_draft_withdrawn").count() == 1
    replaced = api.replace("KIS-1", submission("KIS-1", subject="Doch noch"))
    assert replaced.status_code == 409 and replaced.json()["code"] == "withdrawn"


def test_a_signed_draft_cannot_be_withdrawn(api):
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNED)
    response = api.withdraw("KIS-1")
    assert response.status_code == 409 and response.json()["code"] == "not_withdrawable"
    assert Draft.objects.get().state == Draft.State.SIGNED


def test_read_state_is_audited_with_the_clients_name(api):
    api.submit(submission("KIS-1"))
    response = api.get("KIS-1")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "draft" and body["state_label"] == "Entwurf" and body["signed"] is None
    assert body["document"]["sha256"] == Draft.objects.get().sha256
    event = AuditEvent.objects.get(action="signing.kis_draft_read")
    assert event.details["client"] == "KIS Kardiologie" and event.details["draft"] == body["id"]


def test_unknown_document_id_is_404(api):
    response = api.get("KIS-404")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert api.call("GET", "/gibt/es/nicht", documented=False).json()["code"] == "not_found"


def _sign(draft: Draft, content: bytes, fmt: str = Signature.Format.PADES) -> Signature:
    now = draft.updated_at
    signature = Signature.objects.create(
        draft=draft,
        format=fmt,
        sha256=blob_put(content),
        size=len(content),
        document_version=draft.version,
        document_sha256=draft.sha256,
        signer_certificate=b"\x30\x00",
        signed_at=now,
        verified_at=now,
    )
    Draft.objects.filter(pk=draft.pk).update(state=Draft.State.SIGNED, signed_at=now)
    return signature


def test_the_signed_result_is_downloaded_once_signed(api):
    api.submit(submission("KIS-1"))
    early = api.signed("KIS-1")
    assert early.status_code == 409 and early.json()["code"] == "not_signed"
    signed_pdf = make_pdf("Entlassbrief (signiert)")
    _sign(Draft.objects.get(), signed_pdf)
    state = api.get("KIS-1").json()
    assert state["state"] == "signed" and state["signed"]["format"] == "pades"
    assert state["signed"]["url"] == "/api/kis/v1/drafts/KIS-1/signed"
    response = api.signed("KIS-1")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.body_bytes == signed_pdf and response["X-Document-Version"] == "1"
    assert AuditEvent.objects.filter(action="signing.kis_signed_downloaded").count() == 1


def test_a_text_letter_gives_its_detached_signature(api):
    body = submission(
        "KIS-T", document={"filename": "brief.txt", "content_base64": base64.b64encode(LETTER_TEXT).decode()}
    )
    assert api.submit(body).status_code == 201
    _sign(Draft.objects.get(), b"0\x80cms", Signature.Format.CADES)
    response = api.signed("KIS-T")
    assert response["Content-Type"] == "application/pkcs7-signature" and response.body_bytes == b"0\x80cms"
    assert 'filename="brief.txt.p7s"' in response["Content-Disposition"]


def test_signer_by_telematik_id(api, physician):
    response = api.submit(submission("KIS-1", signer={"telematik_id": "1-HBA-Sommer-0001"}))
    assert response.status_code == 201 and Draft.objects.get().signer == physician


def test_the_openapi_file_is_served_and_valid(client):
    from openapi_spec_validator import validate
    from yaml import safe_load

    response = client.get("/api/kis/v1/openapi.yaml")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/yaml")
    validate(safe_load(response.content))


# --- refusals: a clear JSON error, nothing stored --------------------------------------------------------------------


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


REFUSALS = [
    # (name, overrides or special, status, code)
    ("missing field", {"subject": None}, 400, "missing_field"),
    ("wrong type", {"subject": 42}, 400, "invalid_field"),
    ("recipients not a list", {"recipients": "praxis@praxis-test.kim.telematik-test"}, 400, "invalid_field"),
    ("no recipient", {"recipients": []}, 400, "invalid_field"),
    ("line break in subject", {"subject": "Brief\r\nBcc: x@y"}, 400, "invalid_field"),
    # The queue would show "Entlassbrief Müller" for a stored subject that reads otherwise.
    ("direction override in subject", {"subject": "Entlassbrief \u202erellüM"}, 400, "invalid_field"),
    ("direction override in patient", {"patient_reference": "\u2067Muster\u2069, Anna"}, 400, "invalid_field"),
    ("bad document id", {"document_id": "../etc"}, 400, "invalid_field"),
    ("bad base64", {"document": {"filename": "brief.pdf", "content_base64": "%%%"}}, 400, "invalid_base64"),
    (
        "malformed PDF",
        {"document": {"filename": "brief.pdf", "content_base64": _b64(b"%PDF-1.7 kaputt")}},
        422,
        "document_rejected",
    ),
    (
        "binary file",
        {"document": {"filename": "bild.png", "content_base64": _b64(b"\x89PNG\r\n")}},
        422,
        "document_rejected",
    ),
    ("unknown document type", {"document_type": "rezept"}, 422, "unknown_document_type"),
    ("unknown signer", {"signer": {"username": "niemand"}}, 422, "unknown_signer"),
    ("unknown telematik id", {"signer": {"telematik_id": "1-HBA-gibt-es-nicht"}}, 422, "unknown_signer"),
    ("signer twice", {"signer": {"username": "aerztin", "telematik_id": "1-HBA-Sommer-0001"}}, 400, "invalid_field"),
    ("signer without eHBA", {"signer": {"username": "assistenz"}}, 422, "unknown_signer"),
    ("unknown author", {"author": "niemand"}, 422, "author_not_allowed"),
    ("no KIM address", {"recipients": ["praxis@example.org"]}, 422, "invalid_recipient"),
    ("mailbox outside the scope", {"mailbox": "innere@klinikum-test.kim.telematik-test"}, 403, "mailbox_not_allowed"),
    ("unknown mailbox", {"mailbox": "gibtsnicht@klinikum-test.kim.telematik-test"}, 403, "mailbox_not_allowed"),
]


@pytest.mark.parametrize(("name", "overrides", "status", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_submissions_are_refused_with_a_code(api, name, overrides, status, code):
    MailboxFactory(display_name="Innere", address="innere@klinikum-test.kim.telematik-test")
    body = submission("KIS-1")
    for key, value in overrides.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = api.submit(body, valid_request=False)
    assert response.status_code == status, response.json()
    error = response.json()
    assert error["code"] == code and error["detail"]
    _nothing_stored()
    assert AuditEvent.objects.get(action="signing.kis_request_refused").details["code"] == code


def test_an_author_who_may_not_send_from_the_mailbox_is_refused(api, mailbox):
    UserFactory(username="gast")
    response = api.submit(submission("KIS-1", author="gast"))
    assert response.status_code == 422 and response.json()["code"] == "author_not_allowed"
    _nothing_stored()


def _refusal(api, overrides) -> tuple[dict, int]:
    """The answer to a submission with these fields, and how many queries it took."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = api.submit({**submission("KIS-1"), **overrides}, valid_request=False)
    assert response.status_code == 422
    return response.json(), len(queries)


@pytest.mark.parametrize(
    ("field", "unknown", "known", "code", "reasons"),
    [
        (
            "author",
            {"author": "niemand"},
            {"author": "gast"},
            "author_not_allowed",
            ("author_unknown", "author_without_right"),
        ),
        (
            "signer",
            {"signer": {"username": "niemand"}},
            {"signer": {"username": "gast"}},
            "unknown_signer",
            ("signer_unknown", "signer_without_ehba"),
        ),
    ],
)
def test_a_kis_cannot_tell_an_unknown_username_from_a_known_one_without_the_right(
    api, mailbox, field, unknown, known, code, reasons
):
    """Same status, code and text (but for the name it sent) and the same number of queries; only the audit trail
    says which it was."""
    UserFactory(username="gast")  # active, no membership, no eHBA
    _refusal(api, {"document_type": "rezept"})  # the first call of a token records its use: not compared
    unknown_body, unknown_queries = _refusal(api, unknown)
    known_body, known_queries = _refusal(api, known)
    assert unknown_body["code"] == known_body["code"] == code
    assert unknown_body["field"] == known_body["field"] == field
    assert unknown_body["detail"].replace("niemand", "gast") == known_body["detail"]
    assert unknown_queries == known_queries
    _nothing_stored()
    refused = AuditEvent.objects.filter(action="signing.kis_request_refused", details__code=code).order_by("pk")
    assert [e.details["reason"] for e in refused] == list(reasons)
    assert all(e.details["code"] == code for e in refused)


def test_wrong_json_and_wrong_media_type(api):
    assert api.submit(None, raw=b"{kein json", valid_request=False).json()["code"] == "invalid_json"
    assert api.submit(None, raw=b"[1, 2]", valid_request=False).json()["code"] == "invalid_json"
    assert api.submit(None, raw="{}".encode("utf-16"), valid_request=False).json()["code"] == "invalid_json"
    deep = b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert api.submit(None, raw=deep, valid_request=False).json()["code"] == "invalid_json"
    response = api.submit(None, raw=b"a=b", content_type="application/x-www-form-urlencoded", valid_request=False)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    _nothing_stored()


def test_an_oversized_document_is_413(api, settings):
    settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = 2000
    big = make_pdf("x" * 10, pages=40)
    assert len(big) > 2000
    response = api.submit(submission("KIS-1", document={"filename": "b.pdf", "content_base64": _b64(big)}))
    assert response.status_code == 413 and response.json()["code"] == "document_too_large"
    # A body larger than any allowed document is refused before it is parsed.
    huge = b'{"x": "' + b"a" * 600_000 + b'"}'
    response = api.submit(None, raw=huge, valid_request=False)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    _nothing_stored()


def test_a_document_larger_than_djangos_upload_limit_is_accepted(api, settings):
    # request.body stops at DATA_UPLOAD_MAX_MEMORY_SIZE; the API reads the stream itself up to its own limit.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = make_pdf("Langer Brief " * 20, pages=60)
    assert len(big) > 10_000
    response = api.submit(submission("KIS-1", document={"filename": "lang.pdf", "content_base64": _b64(big)}))
    assert response.status_code == 201
    assert blob_get(Draft.objects.get().sha256) == big


@pytest.mark.parametrize(
    ("token", "code"), [("", "token_missing"), ("kisv1_falsch", "token_invalid")], ids=["missing", "wrong"]
)
def test_no_or_a_wrong_token_is_401(api, token, code):
    response = api.submit(submission("KIS-1"), token=token, valid_request=False)
    assert response.status_code == 401 and response.json()["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")
    _nothing_stored()
    # Without a valid token there is nobody to name: logged, not audited (no trail flooding by strangers).
    assert not AuditEvent.objects.filter(action="signing.kis_request_refused").exists()


def test_a_revoked_token_is_401_at_once(api, issued, manager):
    assert api.submit(submission("KIS-1")).status_code == 201
    token = KisToken.objects.get(token_hash=token_hash(issued.token))
    kis_token_revoke(manager=manager, token=token)
    response = api.get("KIS-1")
    assert response.status_code == 401 and response.json()["code"] == "token_revoked"
    assert api.submit(submission("KIS-2")).status_code == 401
    assert Draft.objects.count() == 1


def test_an_inactive_client_is_401(api, issued):
    type(issued.client).objects.filter(pk=issued.client.pk).update(is_active=False)
    response = api.get("KIS-1")
    assert response.status_code == 401 and response.json()["code"] == "client_inactive"


def test_a_draft_moved_out_of_the_scope_is_no_longer_found(api, issued, mailbox):
    api.submit(submission("KIS-1"))
    issued.client.mailboxes.remove(mailbox)
    assert api.get("KIS-1").status_code == 404
    assert api.withdraw("KIS-1").status_code == 404
    assert Draft.objects.get().state == Draft.State.DRAFT


def test_a_replay_does_not_show_a_draft_moved_out_of_the_scope(api, issued, mailbox):
    """The same submission again finds the draft made the first time — but not once it was moved to a mailbox
    outside the client's scope: what the portal made of it since (another department's letter) is not shown."""
    api.submit(submission("KIS-1"))
    innere = MailboxFactory(address="innere@klinikum-test.kim.telematik-test")
    Draft.objects.update(mailbox=innere, subject="Innere: Befund vertraulich")
    response = api.submit(submission("KIS-1"))
    assert response.status_code == 409 and response.json()["code"] == "document_id_conflict"
    assert "vertraulich" not in response.content.decode() and "innere@" not in response.content.decode()
    assert Draft.objects.count() == 1


def test_a_signed_in_session_is_no_key_to_the_api(api, physician):
    # A browser with a portal session and no token: refused, and nothing is shown.
    browser = Client()
    browser.force_login(physician)
    api.submit(submission("KIS-1"))
    response = browser.get("/api/kis/v1/drafts/KIS-1")
    assert response.status_code == 401 and response.json()["code"] == "token_missing"


def test_csrf_is_not_asked_of_token_calls(issued):
    strict = Api(Client(enforce_csrf_checks=True), issued.token)
    assert strict.submit(submission("KIS-1")).status_code == 201


def test_wrong_method_is_405(api):
    response = api.call("DELETE", "/drafts", documented=False)
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_rate_limit_per_client(api, settings):
    from django.core.cache import cache

    cache.clear()
    settings.KIMPORTAL_KIS_RATE_LIMIT_PER_MINUTE = 3
    codes = [api.get("KIS-404").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    cache.clear()


def test_token_is_stored_hashed_and_shown_by_its_prefix_only(issued):
    row = KisToken.objects.get(client=issued.client)
    assert row.token_hash == token_hash(issued.token) and issued.token not in row.token_hash
    assert issued.token.startswith("kisv1_") and len(issued.token) > 40
    assert row.prefix == issued.token[:12]
    assert issued.secret and issued.secret not in issued.client.callback_secret


def test_a_stranger_in_the_middle_of_a_signature_cannot_use_caller_of_another(api, manager, mailbox):
    """A second client with the same departments neither sees nor changes the first one's drafts."""
    other = kis_client_create(manager=manager, name="Fremd-KIS", mailboxes=[mailbox])
    api.submit(submission("KIS-1"))
    stranger = Api(Client(), other.token)
    assert stranger.get("KIS-1").status_code == 404
    assert stranger.withdraw("KIS-1").status_code == 404
    assert stranger.replace("KIS-1", submission("KIS-1", subject="gekapert")).status_code == 404
    assert Draft.objects.get().subject == "Entlassbrief Herr Muster"


def test_caller_names_the_channel(issued):
    caller = Caller(client=issued.client, token=KisToken.objects.get(client=issued.client))
    assert caller.via == "KIS: KIS Kardiologie"


def test_a_signer_with_a_card_in_another_department_is_refused(api, mailbox):
    # The signer needs an eHBA and the processing role in the sending mailbox (as on the portal's own form).
    outside = UserFactory(username="oberarzt")
    SignerCardFactory(user=outside, telematik_id="1-HBA-Ober-0002")
    MembershipFactory(mailbox=MailboxFactory(), user=outside, role=Membership.Role.PROCESSOR)
    for signer in ({"username": "oberarzt"}, {"telematik_id": "1-HBA-Ober-0002"}):
        response = api.submit(submission("KIS-1", signer=signer))
        assert response.status_code == 422
        # The answer an unknown name gets (a KIS must not learn that this physician exists); the audit knows why.
        assert response.json()["code"] == "unknown_signer" and response.json()["field"] == "signer"
        assert "signieren darf" in response.json()["detail"]
        event = AuditEvent.objects.filter(action="signing.kis_request_refused").latest("pk")
        assert event.details["reason"] == "signer_not_allowed"
    _nothing_stored()
    # A reader of the mailbox neither; with the processing role the same submission is accepted.
    membership = MembershipFactory(mailbox=mailbox, user=outside, role=Membership.Role.READER)
    assert api.submit(submission("KIS-1", signer={"username": "oberarzt"})).status_code == 422
    membership.role = Membership.Role.PROCESSOR
    membership.save()
    assert api.submit(submission("KIS-1", signer={"username": "oberarzt"})).status_code == 201


def test_an_unforeseen_refusal_of_the_draft_services_is_a_json_422(api, monkeypatch):
    """Rules the API does not check itself (a future one of the draft services) still answer in the API's shape."""
    from kimportal.errors import PortalError
    from signing.api import services

    def refuse(**kwargs):
        raise PortalError("Neue Regel: so nicht.")

    monkeypatch.setattr(services, "draft_create", refuse)
    response = api.submit(submission("KIS-1"))
    assert response.status_code == 422
    assert response.json() == {"code": "rejected", "detail": "Neue Regel: so nicht."}
    _nothing_stored()


def test_only_the_token_authenticated_api_views_are_csrf_exempt():
    """Every CSRF-exempt view in the URLconf is a KIS API view that authenticates by token (api_view)."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, namespaces=()):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, (*namespaces, p.namespace) if p.namespace else namespaces)
            else:
                yield namespaces, p

    exempt = [(ns, p.name) for ns, p in walk(get_resolver().url_patterns) if getattr(p.callback, "csrf_exempt", False)]
    assert exempt and all(ns == ("kisapi",) for ns, _name in exempt), exempt
    assert {name for _ns, name in exempt} == {"drafts", "draft", "draft-withdraw", "draft-signed", "not-found"}


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"mailbox": "innere@klinikum-test.kim.telematik-test"}, 403, "mailbox_not_allowed"),
        ({"signer": {"username": "assistenz"}}, 422, "unknown_signer"),
        ({"document": {"filename": "brief.pdf", "content_base64": _b64(b"%PDF-1.7 kaputt")}}, 422, "document_rejected"),
        ({"document_id": "KIS-2"}, 400, "invalid_field"),
    ],
    ids=["mailbox outside the scope", "signer without eHBA", "malformed PDF", "other id in the body"],
)
def test_a_bad_replacement_changes_nothing(api, overrides, status, code):
    MailboxFactory(display_name="Innere", address="innere@klinikum-test.kim.telematik-test")
    api.submit(submission("KIS-1"))
    response = api.replace("KIS-1", {**submission("KIS-1"), **overrides}, valid_request=False)
    assert response.status_code == status and response.json()["code"] == code
    draft = Draft.objects.get()
    assert draft.version == 1 and DraftVersion.objects.filter(draft=draft).count() == 1


def test_every_api_route_is_in_the_openapi_file():
    """A new route without its description fails here (the catch-all for unknown addresses aside)."""
    from django.urls import get_resolver
    from yaml import safe_load

    from signing.api.views import OPENAPI_FILE

    documented = set(safe_load(OPENAPI_FILE.read_text())["paths"])
    api = next(p for p in get_resolver().url_patterns if getattr(p, "namespace", None) == "kisapi")
    routes = {
        "/" + str(p.pattern).strip("^$").replace("(?P<document_id>[A-Za-z0-9][A-Za-z0-9._:-]{0,99})", "{document_id}")
        for p in api.url_patterns
        if p.name != "not-found"
    }
    assert routes == documented


def test_a_reason_kept_from_another_drafts_missing_document_is_read_without_its_name(api):
    """Before a stopped batch named a missing document on that document's draft only, every draft of the batch was
    given the named reason: read back, such a row names the file only on the draft that is that file."""
    api.submit(submission("KIS-1"))
    draft = Draft.objects.get()
    legacy = {"msgid": "Ein Dokument fehlt im Speicher oder ist beschädigt: %(name)s", "params": {"name": "fremd.pdf"}}
    Draft.objects.filter(pk=draft.pk).update(last_error=legacy)
    assert api.get("KIS-1").json()["last_error"] == (
        "Ein Dokument dieses Signaturvorgangs fehlt im Speicher oder ist beschädigt."
    )
    Draft.objects.filter(pk=draft.pk).update(last_error={**legacy, "params": {"name": draft.filename}})
    named = f"Ein Dokument fehlt im Speicher oder ist beschädigt: {draft.filename}"
    assert api.get("KIS-1").json()["last_error"] == named
