"""The API's refusals: an HTTP status, a stable machine code and a German text for the person reading the KIS's
log. Every refusal is raised as ApiError and rendered as one JSON shape (views.error_response).

``reason`` is for the portal's administrators only: the precise cause behind a refusal that deliberately tells the
caller less (an unknown username and a known one without the right answer alike). It is kept on the audit trail
and in the server log, never sent."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.reason = reason

    def as_json(self) -> dict[str, str]:
        body = {"code": self.code, "detail": self.detail}
        if self.field:
            body["field"] = self.field
        return body
