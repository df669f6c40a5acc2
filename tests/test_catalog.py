"""Every German text the portal's Python code marks for translation has an English one in the catalog.

makemessages is not part of the workflow (the catalog is edited by hand), so a text marked with gettext_noop (N_),
whose translation happens only when a stored report or problem is shown, was easily left out: the operations page
showed its whole health report in German to English readers. Templates are covered by their pages' tests."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "locale" / "en" / "LC_MESSAGES" / "django.mo"
# The portal's own code; the simulator (tisim) speaks for the TI, not to the portal's users.
APPS = ("audit", "directory", "kimportal", "konnektor", "mailbox", "operations", "signing")
MARKERS = {"N_", "_", "gettext", "gettext_lazy", "gettext_noop", "ngettext", "ngettext_lazy"}
PLACEHOLDER = re.compile(r"%\(\w+\)[sdf]")


def marked_texts() -> list[tuple[str, int, str | tuple[str, int]]]:
    found: list[tuple[str, int, str | tuple[str, int]]] = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS):
                    continue
                first = node.args[0] if node.args else None
                if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
                    continue
                text = first.value
                if not re.search(r"[A-Za-zÄÖÜäöüß]", PLACEHOLDER.sub("", text)):
                    continue  # only placeholders and punctuation: the same in every language
                key: str | tuple[str, int] = (text, 0) if node.func.id.startswith("ngettext") else text
                found.append((str(path.relative_to(ROOT)), node.lineno, key))
    return found


def test_the_scan_finds_the_marked_texts():
    texts = {key for _path, _line, key in marked_texts()}
    # One of each marker kind the portal uses: a scan that found none of them would pass the test below vacuously.
    assert "Die Datenbank antwortet." in texts  # N_ (operations.services.health)
    assert len(texts) > 500


def test_every_marked_text_has_an_english_translation():
    with CATALOG.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    missing = [f"{path}:{line}: {key!r}" for path, line, key in marked_texts() if key not in catalog]
    assert missing == [], "\n".join(missing)
