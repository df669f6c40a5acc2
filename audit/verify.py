"""Walk the chain and name every event that is not where and what it was when it was written.

What it finds, per event in seq order:
- changed: the content no longer gives the content hash stored with it (someone edited a field), or the stored
  link no longer follows from predecessor, position and content (someone rewrote the hashes);
- removed: a gap in the numbering, or an event whose predecessor hash belongs to no event before it, or a chain
  that ends before its head (cut off at the end);
- inserted: a row outside the chain (no place: written past the sealing trigger), or the events a renumbered
  block was pushed back by;
- reordered: an event whose link was computed for another position (its seq was changed: swapped, or moved to
  make room or close a gap).
The walk streams the events in constant memory and is linear in their number.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import TextField
from django.db.models.functions import Cast

from audit.chain import CONTENT_FIELDS, GENESIS, content_hash, link_hash
from audit.models import AuditEvent, ChainHead

COLUMNS = ("id", "seq", *CONTENT_FIELDS, "content_hash", "prev_hash", "hash")


@dataclass(frozen=True)
class Finding:
    kind: str  # changed | removed | inserted | reordered
    seq: int | None
    event_id: int | None
    text: str

    def __str__(self) -> str:
        where = f"#{self.seq}" if self.seq is not None else "ohne Platz"
        return f"{self.kind}: Ereignis {where} (id {self.event_id}): {self.text}"


@dataclass
class Result:
    checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    findings: list[Finding] | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


def _number(text: str) -> int | str:
    # A number longer than Python's int() accepts (4,300 digits) was never written by the portal: kept as text,
    # it fails its content hash and is named, where decoding it would stop the whole walk.
    try:
        return int(text)
    except ValueError:
        return text


def _rows(batch: int) -> Iterator[dict[str, Any]]:
    columns = [name for name in COLUMNS if name != "details"]
    events = (
        AuditEvent.objects.filter(seq__isnull=False)
        .order_by("seq")
        .annotate(details_text=Cast("details", TextField()))
        .values(*columns, "details_text")
    )
    for row in events.iterator(chunk_size=batch):
        row["details"] = json.loads(row.pop("details_text"), parse_int=_number)
        yield row


SHIFTS = 16  # how far a moved event is looked for around its place (a renumbered block is usually close)


def _written_at(row: dict[str, Any]) -> int | None:
    """The position an event's link was computed for, if within SHIFTS of where it stands now."""
    for shift in range(1, SHIFTS + 1):
        for candidate in (row["seq"] - shift, row["seq"] + shift):
            if candidate > 0 and link_hash(row["prev_hash"], candidate, row["content_hash"]) == row["hash"]:
                return candidate
    return None


def verify_rows(rows: Iterable[dict[str, Any]], head: tuple[int, str] | None) -> Result:
    result = Result(findings=[])
    found = result.findings
    assert found is not None
    recent: deque[tuple[int, int, bool]] = deque(maxlen=SHIFTS)  # (seq, id, had a finding) of the last rows
    prev: dict[str, Any] | None = None
    prev_shift = 0
    for row in rows:
        result.checked += 1
        seq, event_id = row["seq"], row["id"]
        before = len(found)
        shift = 0
        linked = prev is not None and row["prev_hash"] == prev["hash"]
        if content_hash(**{name: row[name] for name in CONTENT_FIELDS}) != row["content_hash"]:
            found.append(Finding("changed", seq, event_id, "Inhalt passt nicht zu seinem Hash (Felder geändert)."))
        elif link_hash(row["prev_hash"], seq, row["content_hash"]) != row["hash"]:
            written = _written_at(row)
            if written is None:
                found.append(Finding("changed", seq, event_id, "gespeicherte Hashes passen nicht zur Verkettung."))
            else:
                shift = seq - written
                # A renumbered block: only its first event is named, the rest follow it unchanged.
                if not (linked and shift == prev_shift):
                    found.append(
                        Finding("reordered", seq, event_id, f"steht an #{seq}, wurde aber als #{written} geschrieben.")
                    )
                    inserted = [r for r in list(recent)[-shift:] if not r[2]] if shift > 0 else []
                    found.extend(
                        Finding(
                            "inserted", r_seq, r_id, f"eingefügt: vor #{seq}, das als #{written} geschrieben wurde."
                        )
                        for r_seq, r_id, _ in inserted
                    )
        expected_seq = prev["seq"] + 1 if prev is not None else 1
        if seq != expected_seq:
            missing = f"#{expected_seq}" if seq - 1 == expected_seq else f"#{expected_seq} bis #{seq - 1}"
            found.append(Finding("removed", seq, event_id, f"davor entfernt: {missing}."))
        elif len(found) == before and not linked and (prev is not None or row["prev_hash"] != GENESIS):
            if not (recent and recent[-1][2]):  # a predecessor already named explains the broken link
                text = "sein ursprünglicher Vorgänger fehlt: davor entfernt oder ersetzt."
                found.append(Finding("removed", seq, event_id, text))
        recent.append((seq, event_id, len(found) > before))
        prev, prev_shift = row, shift
    if prev is not None:
        result.head_seq, result.head_hash = prev["seq"], prev["hash"]
    if head is None and result.checked:
        # Without its head the end of the chain cannot be checked (events cut off there go unnoticed), and the
        # sealing trigger would start again at #1, which is taken: no event could be appended any more.
        text = "der Kopf der Kette fehlt: ihr Ende ist nicht prüfbar, neue Ereignisse können nicht angehängt werden."
        found.append(Finding("removed", result.head_seq, None, text))
    if head is not None and head != (result.head_seq, result.head_hash):
        head_seq, _ = head
        if head_seq > result.head_seq:
            text = (
                f"die Kette endet bei #{result.head_seq}, ihr Kopf steht bei #{head_seq}: Ereignisse am Ende entfernt."
            )
        else:
            text = f"der Kopf der Kette (#{head_seq}) passt nicht zum letzten Ereignis (#{result.head_seq})."
        found.append(Finding("removed", head_seq, None, text))
    return result


def chain_verify(*, batch: int = 5000) -> Result:
    """Verify the whole trail as committed (rows of a transaction still open are not part of it yet)."""
    head = ChainHead.objects.filter(pk=1).values_list("seq", "hash").first()
    result = verify_rows(_rows(batch), head)
    assert result.findings is not None
    for event_id in AuditEvent.objects.filter(seq__isnull=True).values_list("id", flat=True).iterator():
        result.findings.append(Finding("inserted", None, event_id, "steht außerhalb der Kette (nie versiegelt)."))
    return result
