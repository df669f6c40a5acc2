"""The refusals of a withdrawal with a body (a wrong reason, no JSON, a body too large) are in the OpenAPI file
as they are answered."""

from __future__ import annotations

import pytest
from django.test import Client

from signing.api.services import kis_client_create
from signing.models import Draft, KisDraft
from tests.signing.kis import Api, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db

WITHDRAW = "/drafts/KIS-0001/withdraw"


@pytest.fixture
def api(manager, mailbox, physician, assistant) -> Api:
    issued = kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox])
    api = Api(Client(), issued.token)
    assert api.submit(submission()).status_code == 201
    return api


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"body": {"reason": 5}}, 400, "invalid_field"),
        ({"raw": b"[]"}, 400, "invalid_json"),
        ({"raw": b"{", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"raw": b'{"reason": "' + b"x" * 70_000 + b'"}'}, 413, "request_too_large"),
    ],
)
def test_a_refused_withdrawal_is_answered_as_documented(api, kwargs, status, code):
    # Api.call checks the answer against the OpenAPI file: an undocumented status fails there.
    response = api.call("POST", WITHDRAW, valid_request=False, **kwargs)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert KisDraft.objects.get().draft.state == Draft.State.DRAFT
