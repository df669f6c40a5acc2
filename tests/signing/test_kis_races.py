"""The KIS API as a stranger would push it: the same submission twice at the same moment (a KIS retrying on a
timeout while the first call still runs) makes one draft; different content at the same moment makes one draft and
one 409 (real threads on PostgreSQL, as the tests run); and the OpenAPI check the tests use does catch an answer
that breaks the contract."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import InvalidData

from signing.api.services import kis_client_create
from signing.models import Draft, KisDraft
from tests.signing.kis import Api, kis_mailbox, openapi, submission  # noqa: F401


def _at_once(api: Api, bodies: list[dict]) -> list[int]:
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run(body: dict) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(Api(Client(), api.token).submit(body).status_code)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
def test_the_same_submission_at_once_makes_one_draft(manager, mailbox, physician, assistant):
    api = Api(Client(), kis_client_create(manager=manager, name="KIS", mailboxes=[mailbox]).token)
    assert _at_once(api, [submission("KIS-1"), submission("KIS-1"), submission("KIS-1")]) == [200, 200, 201]
    assert Draft.objects.count() == 1 and KisDraft.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_different_content_at_once_makes_one_draft_and_one_conflict(manager, mailbox, physician, assistant):
    api = Api(Client(), kis_client_create(manager=manager, name="KIS", mailboxes=[mailbox]).token)
    statuses = _at_once(api, [submission("KIS-1"), submission("KIS-1", subject="Anderer Brief")])
    assert statuses == [201, 409]
    assert Draft.objects.count() == 1


def test_the_contract_check_catches_a_broken_answer():
    """The tests' OpenAPI check is not a rubber stamp: a draft without its state, or an error without its code,
    fails it."""
    request = MockRequest("http://testserver", "GET", "/api/kis/v1/drafts/KIS-1", headers={"Authorization": "Bearer x"})
    with pytest.raises(InvalidData):
        openapi().validate_response(request, MockResponse(b'{"id": 1, "document_id": "KIS-1"}', status_code=200))
    with pytest.raises(InvalidData):
        openapi().validate_response(request, MockResponse(b'{"detail": "x"}', status_code=404))
    with pytest.raises(InvalidData):
        openapi().validate_response(request, MockResponse(b'{"code": "ausgedacht", "detail": "x"}', status_code=404))
