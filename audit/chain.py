"""The hash chain's arithmetic, shared by the writer, the database trigger's twin and audit_verify.

Each event's content hash is SHA-256 over a canonical JSON array of its fields; its link hash is SHA-256 over
"<predecessor's hash>:<seq>:<content hash>". The PostgreSQL trigger (migration 0003) computes the link with
the same formula, so the database and Python agree byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

GENESIS = "0" * 64

# The columns the content hash covers, in this order; audit_verify reads exactly these.
CONTENT_FIELDS = (
    "at",
    "action",
    "actor_id",
    "actor_username",
    "mailbox_id",
    "mailbox_address",
    "message_id",
    "message_subject",
    "details",
)


def _plain(value: Any) -> Any:
    # Floats are kept as text: a JSON number can come back from the database in another spelling (1e16 as
    # 10000000000000000) and would no longer match its hash.
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def details_normalized(details: dict[str, Any]) -> dict[str, Any]:
    """The details exactly as they will be stored and read back (dates, lazy strings, ids become JSON)."""
    return _plain(json.loads(json.dumps(details, cls=DjangoJSONEncoder)))


def _at_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_hash(
    *,
    at: datetime,
    action: str,
    actor_id: int | None,
    actor_username: str,
    mailbox_id: int | None,
    mailbox_address: str,
    message_id: int | None,
    message_subject: str,
    details: dict[str, Any],
) -> str:
    canonical = json.dumps(
        [
            _at_text(at),
            action,
            actor_id,
            actor_username,
            mailbox_id,
            mailbox_address,
            message_id,
            message_subject,
            details,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def link_hash(prev_hash: str, seq: int, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{seq}:{content}".encode()).hexdigest()
