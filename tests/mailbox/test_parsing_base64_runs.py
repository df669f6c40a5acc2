"""parse_bytes(): long base64 runs kept out of the feed parser's line walk give the stdlib's tree exactly.

The runs are cut out before parsing and put back afterwards (mailbox.parsing.parse_bytes). The
corpus, the sample mails, and random mails with base64 runs dropped anywhere (header blocks,
preambles, epilogues, between boundaries, in delivery-status blocks, next to blank lines, boundary
look-alikes, bare CR or LF, 8-bit bytes, tokens' own characters in UTF-8) must give the same tree as
BytesParser: every part's headers, defects, payload, preamble and epilogue.
"""

from __future__ import annotations

import email.policy
import random
import time
from email.message import Message
from email.parser import BytesParser
from typing import Any

import pytest

from mailbox import parsing
from mailbox.parsing import parse_bytes, parse_message
from mailbox.parsing.policy import parse_policy
from tests.mailbox import corpus
from tests.mailbox.parsing_support import SAMPLES_DIR

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _tree(message: Message) -> list[Any]:
    shape: list[Any] = []
    stack = [message]
    while stack:
        part = stack.pop()
        shape.append([(name, str(value)) for name, value in part.items()])
        shape.append([type(d).__name__ for d in part.defects])
        shape.append((part.get_unixfrom(), part.preamble, part.epilogue, part.get_content_type()))
        payload = part._payload  # type: ignore[attr-defined]
        if isinstance(payload, list):
            shape.append(len(payload))
            stack.extend(reversed(payload))
        else:
            shape.append(payload)
    return shape


def _same_tree(raw: bytes) -> None:
    for policy in (email.policy.default, email.policy.compat32):
        ours = _tree(parse_bytes(raw, policy))
        assert ours == _tree(BytesParser(policy=policy).parsebytes(raw))
    assert _tree(parse_bytes(raw, parse_policy())) == _tree(BytesParser(policy=email.policy.default).parsebytes(raw))


def _run(rng: random.Random) -> bytes:
    lines = ["".join(rng.choice(_B64) for _ in range(rng.choice([76, 76, 76, 64, 1, 3000]))) for _ in range(40)]
    lines = lines[: rng.randint(1, 40)]
    if rng.random() < 0.4:  # a near miss: one character no base64 line has, often at the start of a line
        odd = rng.choice([" ", ":", "-", "--", "\t", "\r", "\n", ".", "From ", "\udcff"])
        at = rng.randrange(len(lines))
        column = rng.choice([0, 0, rng.randrange(len(lines[at]) + 1)])
        lines[at] = lines[at][:column] + odd + lines[at][column:]
    return "\r\n".join(lines).encode("ascii", "surrogateescape")


_PIECES = [
    b"",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--b \r\n",
    b"-x\r\n",
    b"From x\r\n",
    b"X: y\r\n",
    b" cont\r\n",
    b"\r",
    b"\n",
    b"\xff\xfe",
    "\ue000".encode() + b"0" + "\ue001".encode(),
    b"Content-Type: message/delivery-status\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
]


def _random_mail(rng: random.Random) -> bytes:
    base = rng.choice(
        [
            corpus.make_hospital_letter(),
            corpus.make_delivery_status_notification(),
            corpus.make_broken_boundary_unclosed(),
            corpus.make_integrity_failure_notice(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\nx\r\n--b--\r\nepi\r\n",
            b"Content-Type: message/rfc822\r\n\r\nSubject: a\r\n\r\nb",
            b"Content-Type: message/delivery-status\r\n\r\nA: b\r\n\r\nC: d\r\n\r\n",
            b"",
        ]
    )
    lines = base.split(b"\r\n")
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(lines))
        insert = [rng.choice(_PIECES) + (b"\r\n" if rng.random() < 0.7 else b""), _run(rng)]
        if rng.random() < 0.3:
            insert = insert[1:]  # the run alone: after a blank line it may start a header block
        elif rng.random() < 0.8:
            insert.insert(0, b"")  # a blank line before the run
        if rng.random() < 0.5:
            insert.append(rng.choice(_PIECES))
        lines[at:at] = insert
    return b"\r\n".join(lines) + rng.choice([b"", b"\r\n", b"\r\n\r\n"])


@pytest.mark.parametrize("seed", range(600))
def test_random_mails_with_base64_runs_give_the_stdlib_tree(seed):
    _same_tree(_random_mail(random.Random(seed)))


_LONG_BOUNDARY = "----=Part0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ+/"
_WHERE_LINES_MEAN_MORE = [
    # After these blank lines a header block starts, or a boundary may follow.
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: message/delivery-status\r\n\r\nA: b\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=" + _LONG_BOUNDARY.encode() + b"\r\n\r\n",
]
_FIRST_LINES = [
    "",
    "--" + _LONG_BOUNDARY,
    "--" + _LONG_BOUNDARY + "--",
    "From " + "A" * 60,
    "Subject:" + "A" * 60,
    " " + "A" * 60,
    "\t" + "A" * 60,
    "A" * 60 + ":",
    "A" * 30 + " " + "A" * 30,
]


@pytest.mark.parametrize("prefix", _WHERE_LINES_MEAN_MORE)
@pytest.mark.parametrize("first", _FIRST_LINES)
def test_runs_where_a_line_may_be_a_header_or_a_boundary(prefix, first):
    run = ("QUJD" * 19 + "\r\n") * 60
    for body in (first + "\r\n" + run, first + run, run + first + "\r\n" + run):
        _same_tree(prefix + body.encode() + b"--" + _LONG_BOUNDARY.encode() + b"--\r\n")


def test_corpus_and_samples_give_the_stdlib_tree():
    raws = [builder() for builder in corpus.HOSTILE_CORPUS.values()]
    raws += [corpus.make_hospital_letter(), corpus.make_kim_error_mail(), corpus.make_html_with_inline_image()]
    raws += [corpus.make_large_attachment(200_000), corpus.make_deep_nesting()]
    raws += [path.read_bytes() for path in sorted(SAMPLES_DIR.glob("*.eml"))]
    assert len(raws) > 20
    for raw in raws:
        _same_tree(raw)


def test_hostile_layouts_cost_linear_time():
    # Many blank lines without a dash line, many short runs, one huge run, lines of one character.
    run = b"QUJD" * 19 + b"\r\n"
    for raw in (
        b"X: y\r\n" + b"\r\nA" * 400_000,
        (b"\r\n\r\n" + run * 30) * 10_000,
        b"X: y\r\n\r\n" + run * 100_000,
        b"X: y\r\n\r\n" + b"A\r\n" * 500_000 + b"-",
    ):
        started = time.process_time()
        parse_bytes(raw, email.policy.compat32)
        assert time.process_time() - started < 10.0


def test_the_letters_pdf_takes_the_shortcut(monkeypatch):
    letter = corpus.make_hospital_letter()
    restored: list[int] = []
    original = parsing._restore

    def spy(message: Message, runs: list[str]) -> int:
        restored.append(len(runs))
        return original(message, runs)

    monkeypatch.setattr(parsing, "_restore", spy)
    result = parse_message(letter)
    assert restored == [1]
    [pdf] = result.attachments
    assert isinstance(pdf.payload, bytes) and pdf.payload.startswith(b"%PDF")
    assert result == parse_message(letter)


def test_a_lost_token_falls_back_to_the_plain_parse(monkeypatch):
    letter = corpus.make_hospital_letter()
    monkeypatch.setattr(parsing, "_restore", lambda message, runs: 0)
    assert _tree(parse_bytes(letter, email.policy.default)) == _tree(
        BytesParser(policy=email.policy.default).parsebytes(letter)
    )
