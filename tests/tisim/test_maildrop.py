from __future__ import annotations

from pathlib import Path

from tisim.cm.maildrop import MaildropStore, to_crlf
from tisim.cm.pop3 import byte_stuff


def test_crlf_normalisation_keeps_canonical_input_identical() -> None:
    canonical = b"A: b\r\n\r\nx\r\n"
    assert to_crlf(canonical) is canonical
    assert to_crlf(b"A: b\n\nx") == canonical
    assert to_crlf(b"A: b\r\rx\r\n") == b"A: b\r\n\r\nx\r\n"


def test_uidls_are_unique_and_in_delivery_order(tmp_path: Path) -> None:
    store = MaildropStore(tmp_path)
    uidls = [store.deliver("a@b.kim.telematik", b"n: %d\r\n\r\n" % i) for i in range(200)]
    assert len(set(uidls)) == 200
    assert store.uidls("a@b.kim.telematik") == uidls
    assert [store.read("a@b.kim.telematik", u) for u in uidls[:2]] == [b"n: 0\r\n\r\n", b"n: 1\r\n\r\n"]


def test_maildrop_holds_only_finished_files(tmp_path: Path) -> None:
    store = MaildropStore(tmp_path)
    uidl = store.deliver("A@B.kim.telematik", b"x")
    assert sorted(p.name for p in (tmp_path / "a@b.kim.telematik").iterdir()) == [f"{uidl}.eml"]
    (tmp_path / "a@b.kim.telematik" / ".half.tmp").write_bytes(b"partial")
    assert store.uidls("a@b.kim.telematik") == [uidl]


def test_byte_stuffing_handles_chunk_boundaries() -> None:
    whole = b".a\r\nb\r\n.c\r\n"
    chunks = [whole[:6], whole[6:]]  # the second chunk starts with ".c"
    out, at_start = b"", True
    for chunk in chunks:
        out += byte_stuff(chunk, at_start)
        at_start = chunk.endswith(b"\n")
    assert out == b"..a\r\nb\r\n..c\r\n"
