"""The RETR reader: whole buffers of lines at a time must give exactly what reading line by line gives.

The oracle below is the line-by-line reader the fetch used before (poplib-style readline, one line
or READ_PIECE bytes at a time). Random answers with dot-stuffing, bare LF, lone CR, CRLF cut at
READ_PIECE, lines longer than the buffer and short socket reads must come out byte for byte the
same, and nothing after the terminating dot may be consumed (the next answer belongs to poplib).
"""

from __future__ import annotations

import io
import random

import pytest

from mailbox.clients import pop3
from mailbox.clients.pop3 import RetrTooLarge, _read_multiline
from mailbox.clients.tls import CmUnreachable


class _ShortReads(io.RawIOBase):
    """A socket-like raw stream: every read returns a random, often short, part of what is asked."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._rng = rng

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self._rng.randint(1, 40), len(self._data) - self._pos)
        buffer[:size] = self._data[self._pos : self._pos + size]
        self._pos += size
        return size


def _reader(data: bytes, rng: random.Random, buffer_size: int) -> io.BufferedReader:
    return io.BufferedReader(_ShortReads(data, rng), buffer_size=buffer_size)


def _line_by_line(reader: io.BufferedReader, piece_size: int) -> bytes:
    out = bytearray()
    at_line_start, after_cr = True, False
    while True:
        piece = reader.readline(piece_size)
        if not piece:
            raise CmUnreachable("closed")
        if at_line_start:
            if piece in (b".\r\n", b".\n"):
                break
            if piece.startswith(b"."):
                piece = piece[1:]
        if piece.endswith(b"\n"):
            if not piece.endswith(b"\r\n") and not (piece == b"\n" and after_cr):
                piece = piece[:-1] + b"\r\n"
            at_line_start = True
        else:
            at_line_start = False
        after_cr = piece.endswith(b"\r")
        out += piece
    return bytes(out) or b"\r\n"


def _answer(rng: random.Random) -> bytes:
    atoms = [b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"bc", b" ", b"\x00", b"\xff", b".\r", b"x" * 30]
    lines = []
    for _ in range(rng.randint(0, 30)):
        line = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        if line.startswith(b".") and rng.random() < 0.97:
            line = b"." + line  # byte-stuffed, as a server sends it (mostly)
        lines.append(line + rng.choice([b"\r\n", b"\n", b"\r\n", b"\r\n"]))
    return b"".join(lines) + rng.choice([b".\r\n", b".\n"])


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1


@pytest.mark.parametrize("seed", range(400))
def test_buffered_lines_read_as_line_by_line_does(seed, monkeypatch):
    rng = random.Random(seed)
    piece = rng.choice([3, 5, 8, 64 * 1024])
    monkeypatch.setattr(pop3, "READ_PIECE", piece)
    buffer_size = rng.choice([8, 16, 37, 8192])
    answer = _answer(rng)
    after = b"+OK next answer\r\n"

    oracle = _reader(answer + after, random.Random(seed), buffer_size)
    expected = _line_by_line(oracle, piece)
    reader = _reader(answer + after, rng, buffer_size)
    sink = _Sink()
    total = _read_multiline(reader, sink, None)

    assert bytes(sink.data) == expected
    assert total == len(expected)
    # Nothing after the terminating dot was consumed (an unstuffed "." line ends the answer early).
    assert reader.read() == oracle.read()


def test_a_bare_lf_mail_becomes_crlf_and_dots_are_unstuffed():
    sink = _Sink()
    reader = io.BufferedReader(io.BytesIO(b"Subject: x\n\n..dot\n.\r\nrest\n.\n+OK"))
    _read_multiline(reader, sink, None)
    assert bytes(sink.data) == b"Subject: x\r\n\r\n.dot\r\n"
    assert reader.read() == b"rest\n.\n+OK"


def test_an_empty_answer_is_one_line_end():
    sink = _Sink()
    assert _read_multiline(io.BufferedReader(io.BytesIO(b".\r\n")), sink, None) == 2
    assert bytes(sink.data) == b"\r\n"


def test_an_answer_beyond_the_limit_stops_reading():
    body = b"y" * 70 + b"\r\n"
    reader = io.BufferedReader(io.BytesIO(body * 1000 + b".\r\n"), buffer_size=1024)
    with pytest.raises(RetrTooLarge):
        _read_multiline(reader, _Sink(), 10_000)
    # It stopped within a buffer of the limit, not at the end of the answer.
    assert len(reader.read()) > 50_000


def test_a_connection_closed_before_the_dot_is_unreachable():
    with pytest.raises(CmUnreachable):
        _read_multiline(io.BufferedReader(io.BytesIO(b"Subject: cut\r\n\r\nhalf")), _Sink(), None)


def test_writes_come_in_large_chunks_not_per_line(monkeypatch):
    monkeypatch.setattr(pop3, "WRITE_CHUNK", 4096)
    sink = _Sink()
    body = b"line of text\r\n" * 2000
    _read_multiline(io.BufferedReader(io.BytesIO(body + b".\r\n")), sink, None)
    assert bytes(sink.data) == body
    assert sink.writes <= len(body) // 4096 + 1
