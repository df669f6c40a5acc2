"""Every SOAP operation the simulated Konnektor answers: operation element → handler."""

from __future__ import annotations

from tisim.konnektor import authentication, comfort, operations, verify_document
from tisim.konnektor.operations import Handler

HANDLERS: dict[str, Handler] = {
    **operations.HANDLERS,
    **comfort.HANDLERS,
    **verify_document.HANDLERS,
    **authentication.HANDLERS,
}
