"""A NUL or a lone surrogate in any string of a KIS request: valid JSON escapes ("\\u0000", "\\ud800") that no
text the portal keeps can hold. Refused as the field's error, never a server error, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from signing.api.services import kis_client_create
from signing.models import Draft, KisDraft
from tests.signing.kis import Api, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db

PDF = submission()["document"]["content_base64"]


@pytest.fixture
def api(manager, mailbox, physician, assistant) -> Api:
    issued = kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox])
    return Api(Client(), issued.token)


def _raw(body: dict) -> bytes:
    # json.dumps writes "\u0000" and "\ud800" as the escapes a KIS would send.
    return json.dumps(body).encode()


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"signer": {"username": "aerztin{}"}}, "signer.username"),
        ({"signer": {"telematik_id": "1-HBA{}"}}, "signer.telematik_id"),
        ({"body": "Sehr geehrte{} Kollegin"}, "body"),
        ({"subject": "Entlassbrief{}"}, "subject"),
        ({"document": {"filename": "brief{}.pdf", "content_base64": PDF}}, "document.filename"),
    ],
)
def test_a_nul_or_lone_surrogate_in_a_submission_is_400(api, overrides, field, bad):
    filled = json.loads(json.dumps(overrides).replace("{}", "\\u0000" if bad == "\x00" else "\\ud800"))
    response = api.call("POST", "/drafts", raw=_raw(submission(**filled)), valid_request=False)
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_field",
        "detail": f"Das Feld „{field}“ enthält ein Nullzeichen oder ein ungültiges Unicode-Zeichen.",
        "field": field,
    }
    assert not Draft.objects.exists()


def test_a_nul_in_a_key_is_400(api):
    body = submission()
    body["x\x00"] = 1
    response = api.call("POST", "/drafts", raw=_raw(body), valid_request=False)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_a_nul_in_a_replacement_or_a_withdrawal_reason_is_400_and_changes_nothing(api):
    assert api.submit(submission()).status_code == 201
    response = api.call("PUT", "/drafts/KIS-0001", raw=_raw(submission(body="neu\x00")), valid_request=False)
    assert (response.status_code, response.json()["field"]) == (400, "body")
    response = api.call("POST", "/drafts/KIS-0001/withdraw", raw=_raw({"reason": "weg\ud800"}), valid_request=False)
    assert (response.status_code, response.json()["field"]) == (400, "reason")
    draft = KisDraft.objects.get().draft
    assert (draft.version, draft.state) == (1, Draft.State.DRAFT)
