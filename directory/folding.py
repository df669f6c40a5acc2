"""German spelling variants: ß/ss and ä/ae, ö/oe, ü/ue. Pure functions, no I/O.

The VZD stores names as their owners typed them ("Weißenfels", "Gross", "Mueller") and the portal cannot change
the directory's matching rules, so a search term is expanded into the spellings it may stand for, each an indexed
substring assertion OR-ed together: "Groß" → groß | gross, and "Gross" → gross | groß (an "ss" may or may not be
a "ß", so it gets both). Both directions produce the same set, which is why "Groß" and "Gross" find the same
entries. A plain vowel is never umlauted: "Muller" does not become "Müller" (that would be a different name).

The number of spellings is capped: every ae/oe/ue/ss doubles them, and a hostile term must not blow up the filter.
"""

from __future__ import annotations

from itertools import combinations

# Transliteration the other way round: what a German keyboard-less spelling writes for each letter.
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_UMLAUT = {"ae": "ä", "oe": "ö", "ue": "ü", "ss": "ß"}
_VOWELS = set("aeiouäöüy")
MAX_SPELLINGS = 8  # per term; the canonical and the typed form always come first


def fold(text: str) -> str:
    """One comparison form for both spellings: lower-case, umlauts and ß transliterated (ä→ae, ß→ss)."""
    return text.casefold().translate(_TRANSLIT)


def _spots(canonical: str) -> list[tuple[int, str]]:
    """Places in the transliterated text where a letter pair may stand for an umlaut or ß (left to right)."""
    spots: list[tuple[int, str]] = []
    i = 0
    while i < len(canonical) - 1:
        pair = canonical[i : i + 2]
        if pair in _UMLAUT:
            # "Bauer", "Feuer", "Quelle", "Joel": a vowel or q before the e-pair makes it a plain diphthong.
            before = canonical[i - 1] if i else ""
            if pair == "ss" or not (before in _VOWELS or before == "q"):
                spots.append((i, pair))
                i += 2
                continue
        i += 1
    return spots


def _apply(canonical: str, spots: tuple[tuple[int, str], ...]) -> str:
    out, last = [], 0
    for i, pair in spots:
        out.append(canonical[last:i])
        out.append(_UMLAUT[pair])
        last = i + 2
    out.append(canonical[last:])
    return "".join(out)


def spellings(term: str, *, limit: int = MAX_SPELLINGS, min_length: int = 1) -> list[str]:
    """The lower-cased term and the spellings it may stand for, at most ``limit``, each at least ``min_length``
    characters long (a shorter substring would not use the directory's index).

    Order: as typed, fully transliterated, fully umlauted, then one, two … spots changed — the likely spellings
    survive the cap.
    """
    typed = term.lower()
    canonical = typed.translate(_TRANSLIT)
    spots = _spots(canonical)
    out: dict[str, None] = {}

    def add(value: str) -> bool:
        if len(value) >= min_length:
            out[value] = None
        return len(out) >= limit

    if add(typed) or add(canonical):
        return list(out)
    sizes = [len(spots), *[k for n in range(1, len(spots)) for k in (n, len(spots) - n)]]
    for size in dict.fromkeys(sizes):
        for chosen in combinations(spots, size):
            if add(_apply(canonical, chosen)):
                return list(out)
    return list(out)
