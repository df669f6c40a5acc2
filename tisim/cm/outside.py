"""The "outside" drop: mail for recipients the simulated CM does not host.

In the real TI such a mail goes to another provider's Fachdienst; here it is kept as it reached the
CM, one submission per file, ``<data_dir>/outside/<id>.eml`` with ``<id>.json`` next to it
(envelope sender and the outside recipients). The ``.json`` is written first and the ``.eml``
appears atomically last, so a reader never sees half a submission.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from tisim.cm.maildrop import SUFFIX, MaildropStore, to_crlf
from tisim.cm.messages import get_header


class OutsideMessage(NamedTuple):
    envelope_from: str
    recipients: list[str]
    raw: bytes

    @property
    def message_id(self) -> str | None:
        return get_header(self.raw, "Message-ID")


class OutsideDrop:
    def __init__(self, root: Path) -> None:
        self.root = root
        # Borrowed for its strictly increasing, time-ordered ids; no maildrop is touched.
        self._ids = MaildropStore(root)

    def store(self, envelope_from: str, recipients: list[str], raw: bytes) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        uid = self._ids.new_uidl()
        meta = {"envelope_from": envelope_from, "recipients": recipients}
        (self.root / f"{uid}.json").write_text(json.dumps(meta), encoding="utf-8")
        tmp = self.root / f".{uid}.tmp"
        tmp.write_bytes(to_crlf(raw))
        os.replace(tmp, self.root / f"{uid}{SUFFIX}")
        return uid

    def messages(self) -> list[OutsideMessage]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            uid = name[: -len(SUFFIX)]
            meta = json.loads((self.root / f"{uid}.json").read_text(encoding="utf-8"))
            raw = (self.root / name).read_bytes()
            found.append(OutsideMessage(str(meta["envelope_from"]), [str(r) for r in meta["recipients"]], raw))
        return found

    def clear(self) -> None:
        for path in self.root.glob("*"):
            if path.suffix in (SUFFIX, ".json"):
                path.unlink(missing_ok=True)
