"""The registry of document types a draft may have, kept as data (signing/data/document_types.json).

Each type knows the Dienstkennung its letter is sent with; a new type is a new row in the file, not code.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from django.utils import translation

DATA_FILE = Path(__file__).resolve().parent / "data" / "document_types.json"


@dataclass(frozen=True)
class DocumentType:
    code: str
    label: str
    label_en: str
    dienstkennung: str

    def label_for(self, language: str | None = None) -> str:
        language = language if language is not None else translation.get_language()
        return self.label_en if (language or "").startswith("en") and self.label_en else self.label


@functools.cache
def document_types() -> dict[str, DocumentType]:
    """All registered types by code, in the file's order (read once per process)."""
    rows = json.loads(DATA_FILE.read_text(encoding="utf-8"))["types"]
    return {row["code"]: DocumentType(row["code"], row["label"], row["label_en"], row["dienstkennung"]) for row in rows}


def document_type(code: str) -> DocumentType | None:
    return document_types().get(code)


def document_type_choices() -> list[tuple[str, str]]:
    return [(t.code, t.label_for()) for t in document_types().values()]


def document_type_label(code: str) -> str:
    found = document_type(code)
    return found.label_for() if found is not None else code
