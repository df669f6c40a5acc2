"""A signed result whose stored signature is gone: a JSON 500 (`storage_error`) as the OpenAPI file describes it."""

from __future__ import annotations

import pytest
from django.test import Client

from signing.api.services import kis_client_create
from signing.models import Draft, Signature
from tests.signing.kis import Api, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_missing_signature_is_a_documented_500(manager, mailbox, physician, assistant):
    api = Api(Client(), kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox]).token)
    assert api.submit(submission("KIS-1")).status_code == 201
    draft = Draft.objects.get()
    Signature.objects.create(
        draft=draft,
        format=Signature.Format.PADES,
        sha256="0" * 64,  # no such blob
        size=10,
        document_version=draft.version,
        document_sha256=draft.sha256,
        signer_certificate=b"\x30\x00",
        signed_at=draft.updated_at,
        verified_at=draft.updated_at,
    )
    Draft.objects.filter(pk=draft.pk).update(state=Draft.State.SIGNED, signed_at=draft.updated_at)
    # Api.call checks the answer against the OpenAPI file: an undocumented status fails there.
    response = api.signed("KIS-1")
    assert (response.status_code, response.json()["code"]) == (500, "storage_error")
