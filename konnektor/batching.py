"""Splitting a batch of documents into SignDocument calls within the Konnektor's limits.

gemSpec_Kon: at least 50 SignRequests per call must be accepted (more than the Konnektor supports → 4000),
each document at most 25 MB (TIP1-A_4500), all documents of one call together at most 250 MB (→ 4283).
gemILF_PS: no mixing of signature types in one call, so PAdES and CAdES items go into separate calls.
Every call is one PIN entry at the card terminal: calls are filled as far as the limits allow.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import error_text
from .types import BatchPlan, KonnektorConfig, SignItem, SignResult

TOO_BIG = 4283


def batches(items: Iterable[SignItem], config: KonnektorConfig) -> BatchPlan:
    """The calls to make, in the order the items came (grouped by signature type), and the items too big for any
    call as failed results (4283) — they never reach the Konnektor."""
    groups: dict[bool, list[list[SignItem]]] = {}
    sizes: dict[bool, int] = {}
    order: list[bool] = []
    rejected: list[SignResult] = []
    limit = max(1, config.max_requests_per_call)
    for item in items:
        size = len(item.content)
        if size > config.max_document_bytes or size > config.max_call_bytes:
            rejected.append(SignResult(request_id=item.request_id, ok=False, code=TOO_BIG, text=error_text(TOO_BIG)))
            continue
        calls = groups.get(item.pades)
        if calls is None:
            calls = groups[item.pades] = [[]]
            sizes[item.pades] = 0
            order.append(item.pades)
        current = calls[-1]
        if current and (len(current) >= limit or sizes[item.pades] + size > config.max_call_bytes):
            current = []
            calls.append(current)
            sizes[item.pades] = 0
        current.append(item)
        sizes[item.pades] += size
    return BatchPlan(calls=[call for kind in order for call in groups[kind]], rejected=rejected)
