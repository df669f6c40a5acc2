"""Things the simulated Fachdienst holds back: DSNs not yet handed out, mail for "delayed" recipients.

One file pair per item under its directory: ``<id>.json`` (what it is about) written first, then
``<id>.eml`` atomically; a reader only sees items whose ``.eml`` exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tisim.cm.maildrop import SUFFIX, MaildropStore, to_crlf


@dataclass(frozen=True)
class HeldItem:
    uid: str
    meta: dict[str, Any]
    raw: bytes


class HeldStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._ids = MaildropStore(root)  # only for its time-ordered ids

    def put(self, meta: dict[str, Any], raw: bytes) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        uid = self._ids.new_uidl()
        (self.root / f"{uid}.json").write_text(json.dumps(meta), encoding="utf-8")
        tmp = self.root / f".{uid}.tmp"
        tmp.write_bytes(to_crlf(raw))
        os.replace(tmp, self.root / f"{uid}{SUFFIX}")
        return uid

    def items(self) -> list[HeldItem]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            uid = name[: -len(SUFFIX)]
            try:
                meta = json.loads((self.root / f"{uid}.json").read_text(encoding="utf-8"))
                raw = (self.root / name).read_bytes()
            except FileNotFoundError:  # released by someone else meanwhile
                continue
            found.append(HeldItem(uid, meta, raw))
        return found

    def remove(self, uid: str) -> bool:
        """False if it was gone already (another release took it)."""
        try:
            (self.root / f"{uid}{SUFFIX}").unlink()
        except FileNotFoundError:
            return False
        (self.root / f"{uid}.json").unlink(missing_ok=True)
        return True

    def clear(self) -> None:
        for item in self.items():
            self.remove(item.uid)
