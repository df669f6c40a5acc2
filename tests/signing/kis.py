"""Helpers of the KIS API tests: a client system with a token, submissions, and an API client that checks every
request it sends and every response it gets against the OpenAPI file the portal serves."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import yaml
from django.test import Client
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from signing.api.services import kis_client_create
from signing.api.views import OPENAPI_FILE
from tests.mailbox.factories import MailboxFactory
from tests.signing.documents import make_pdf

BASE = "/api/kis/v1"
KIS_MAILBOX = "kardiologie@klinikum-test.kim.telematik-test"


# The KIS tests' mailbox and connection, imported by the test modules that use them (their names replace the
# signing conftest's mailbox for those modules).
@pytest.fixture(name="mailbox")
def kis_mailbox():
    return MailboxFactory(display_name="Kardiologie", address=KIS_MAILBOX)


@pytest.fixture(name="issued")
def kis_issued(manager, mailbox, physician, assistant):
    return kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox])


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(OPENAPI_FILE))


@cache
def error_schema() -> OAS30Validator:
    spec = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    return OAS30Validator(spec["components"]["schemas"]["Error"])


def submission(document_id: str = "KIS-0001", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "document_id": document_id,
        "document_type": "earztbrief",
        "mailbox": KIS_MAILBOX,
        "author": "assistenz",
        "signer": {"username": "aerztin"},
        "patient_reference": "Fall 4711",
        "subject": "Entlassbrief Herr Muster",
        "body": "Sehr geehrte Kollegin,\nanbei der Entlassbrief.",
        "recipients": ["praxis@praxis-test.kim.telematik-test"],
        "document": {"filename": "brief.pdf", "content_base64": base64.b64encode(make_pdf("Entlassbrief")).decode()},
    }
    body.update(overrides)
    return body


@dataclass
class Api:
    """The Django test client speaking to the API with a token; `validate` checks request and response against
    the OpenAPI file (the request only when it is meant to be valid)."""

    client: Client
    token: str
    checked: list[str] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        token: str | None = None,
        valid_request: bool = True,
        documented: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        used = self.token if token is None else token
        extra = {"HTTP_AUTHORIZATION": f"Bearer {used}"} if used else {}
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        url = BASE + path
        kwargs: dict[str, Any] = {"data": data, "content_type": content_type} if data or method != "GET" else {}
        response = getattr(self.client, method.lower())(url, **kwargs, **extra)
        request = MockRequest(
            "http://testserver",
            method,
            url,
            headers={"Authorization": f"Bearer {used}", "Content-Type": content_type} if used else {},
            data=data or None,
            content_type=content_type if data else "",
        )
        if valid_request and documented:
            openapi().validate_request(request)
        body_bytes = b"".join(response.streaming_content) if response.streaming else response.content
        if not documented:
            # A path or method the file does not have: the answer is still the documented error shape.
            error_schema().validate(json.loads(body_bytes))
            response.body_bytes = body_bytes
            return response
        openapi().validate_response(
            request,
            MockResponse(
                body_bytes,
                status_code=response.status_code,
                headers=dict(response.headers.items()),
                content_type=response.get("Content-Type", ""),
            ),
        )
        self.checked.append(f"{method} {path} {response.status_code}")
        response.body_bytes = body_bytes
        return response

    def submit(self, body: dict[str, Any], **kwargs: Any) -> Any:
        return self.call("POST", "/drafts", body, **kwargs)

    def get(self, document_id: str, **kwargs: Any) -> Any:
        return self.call("GET", f"/drafts/{document_id}", **kwargs)

    def replace(self, document_id: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return self.call("PUT", f"/drafts/{document_id}", body, **kwargs)

    def withdraw(self, document_id: str, reason: str | None = None, **kwargs: Any) -> Any:
        body = {"reason": reason} if reason is not None else None
        return self.call("POST", f"/drafts/{document_id}/withdraw", body, **kwargs)

    def signed(self, document_id: str, **kwargs: Any) -> Any:
        return self.call("GET", f"/drafts/{document_id}/signed", **kwargs)
