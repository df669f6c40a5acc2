"""The parse policy's header shortcut: plain MIME headers give exactly the header objects the stdlib builds.

Content-Type, Content-Disposition and Content-Transfer-Encoding values of a plain shape are read by a
regular expression (mailbox.parsing.policy).  Random values built from plain and near-miss pieces
(comments, RFC 2231 marks, encoded words, quotes, backslashes, missing '=', repeated parameters,
8-bit) check that every answer of the header object — its string, parameters, types, defects, its
parse tree and how it folds — is the stdlib's, whether or not the shortcut took it.
"""

from __future__ import annotations

import email.policy
import random
from email.headerregistry import BaseHeader, HeaderRegistry
from typing import Any

import pytest

from mailbox.parsing.charsets import has_surrogates
from mailbox.parsing.policy import _OncePerValue

_NAMES = ["content-type", "content-disposition", "content-transfer-encoding"]
_ODD = "abcXYZ019!#$&+-.^_`{|}~*'%/=?;\"\\ ()<>@,:[]\tä\udce4"


def _token(rng: random.Random) -> str:
    if rng.random() < 0.85:
        return "".join(rng.choice("abcdefxyzABC0189-.+_") for _ in range(rng.randint(1, 8)))
    return "".join(rng.choice(_ODD) for _ in range(rng.randint(0, 6)))


def _blank(rng: random.Random) -> str:
    return rng.choice(["", "", "", " ", "  ", "\t", " \t"])


def _quoted(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return '"' + "".join(rng.choice("abc xyz.-_;=/()ABC019") for _ in range(rng.randint(0, 10))) + '"'
    return '"' + "".join(rng.choice(_ODD) for _ in range(rng.randint(0, 8))) + rng.choice(['"', ""])


def _random_value(rng: random.Random, kind: str) -> str:
    if kind == "content-transfer-encoding":
        extra = rng.choice(["", " x", ";", "(c)", "=?utf-8?q?x?="]) if rng.random() < 0.2 else ""
        return _blank(rng) + _token(rng) + _blank(rng) + extra
    value = _blank(rng) + _token(rng) + _blank(rng)
    if kind == "content-type":
        value += rng.choice(["/", "/", "/", "", "//"]) + _blank(rng) + _token(rng) + _blank(rng)
    for _ in range(rng.randint(0, 3)):
        name = rng.choice([_token(rng), "charset", "name", "filename", "Name", "boundary", "name*", "name*0"])
        text = _quoted(rng) if rng.random() < 0.5 else _token(rng)
        if rng.random() < 0.05:
            text = rng.choice(['"=?utf-8?q?Befund=2Epdf?="', "=?utf-8?q?x?=", '"a\\"b"', "(Kommentar)x"])
        separator = rng.choice([";", ";", ";", ",", ""])
        equals = rng.choice(["=", "=", "=", "", "=="])
        value += separator + _blank(rng) + name + _blank(rng) + equals + _blank(rng) + text + _blank(rng)
    if rng.random() < 0.1:
        value += ";" + _blank(rng)
    return value


def _answers(header: BaseHeader) -> list[Any]:
    answers: list[Any] = [str(header), header.name, [(type(d).__name__, str(d)) for d in header.defects]]
    for attribute in ("params", "maintype", "subtype", "content_type", "content_disposition", "cte"):
        if hasattr(header, attribute):
            value = getattr(header, attribute)
            answers.append((attribute, list(value.items()) if attribute == "params" else value))
    for policy in (email.policy.default, email.policy.default.clone(max_line_length=20)):
        try:
            answers.append(header.fold(policy=policy))
        except Exception as exc:  # the same failure is the same answer
            answers.append(type(exc).__name__)
    answers.append(str(header._parse_tree))  # type: ignore[attr-defined]
    answers.append([c.__name__ for c in type(header).__mro__ if not c.__name__.startswith("_")])
    return answers


def _both(name: str, value: str) -> tuple[BaseHeader | str, BaseHeader | str, bool]:
    """(our header, the stdlib's header, whether ours took the shortcut); an exception as its type's name."""
    try:
        ours: BaseHeader | str = _OncePerValue()(name, value)
    except Exception as exc:
        ours = type(exc).__name__
    try:
        stdlib: BaseHeader | str = HeaderRegistry()(name, value)
    except Exception as exc:
        stdlib = type(exc).__name__
    return ours, stdlib, isinstance(ours, BaseHeader) and "_source" in vars(ours)


@pytest.mark.parametrize("seed", range(3000))
def test_mime_headers_answer_as_the_stdlib_does(seed):
    rng = random.Random(seed)
    kind = rng.choice(_NAMES)
    name = rng.choice([kind, kind.title(), kind.upper()])
    value = _random_value(rng, kind)
    ours, stdlib, _ = _both(name, value)
    if isinstance(stdlib, BaseHeader):
        assert isinstance(ours, BaseHeader), value
        assert _answers(ours) == _answers(stdlib), value
    else:
        assert ours == stdlib, value


@pytest.mark.parametrize(
    "name, value",
    [
        ("Content-Type", 'multipart/mixed; boundary="mixed"'),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Type", "text/plain;\tcharset=utf-8 ; format=flowed"),
        ("Content-Type", 'application/pdf; name="Entlassbrief 2022.pdf"'),
        ("Content-Type", "TEXT/HTML"),
        ("Content-Type", "text/plain;"),
        ("Content-Disposition", 'attachment; filename="Entlassbrief.pdf"'),
        ("Content-Disposition", "inline"),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Transfer-Encoding", " Quoted-Printable "),
    ],
)
def test_plain_headers_take_the_shortcut(name, value):
    ours, stdlib, shortcut = _both(name, value)
    assert shortcut
    assert isinstance(ours, BaseHeader) and isinstance(stdlib, BaseHeader)
    assert _answers(ours) == _answers(stdlib)


@pytest.mark.parametrize(
    "name, value",
    [
        ("Content-Type", "text/plain; name*=utf-8''Befund%20M%C3%BCller.pdf"),
        ("Content-Type", "text/plain; name*0=a; name*1=b"),
        ("Content-Type", 'text/plain; name="=?utf-8?q?Befund_M=C3=BCller.pdf?="'),
        ("Content-Type", "text/plain (Kommentar); charset=utf-8"),
        ("Content-Type", "text/plain; charset=utf-8; charset=latin-1"),
        ("Content-Type", 'text/plain; name="a\\"b"'),
        ("Content-Type", "text/plain; charset=ä"),
        ("Content-Type", "text/plain; name=a b.pdf"),
        ("Content-Disposition", "attachment; filename"),
        ("Content-Transfer-Encoding", "base64 x"),
    ],
)
def test_other_shapes_go_to_the_stdlib_parser(name, value):
    ours, stdlib, shortcut = _both(name, value)
    assert not shortcut
    assert isinstance(ours, BaseHeader) and isinstance(stdlib, BaseHeader)
    assert _answers(ours) == _answers(stdlib)


@pytest.mark.parametrize("value", ["", "abc", "ä", "a\udc80b", "\udcff", "\udc7f\udd00", "€\udce4"])
def test_has_surrogates_finds_smuggled_8bit_bytes(value):
    assert has_surrogates(value) == any("\udc80" <= ch <= "\udcff" for ch in value)


def _filename_headers(rng: random.Random) -> bytes:
    headers = []
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(["Content-Type", "Content-Disposition", "content-type", "CONTENT-DISPOSITION", "X-Name"])
        value = _random_value(rng, "content-type" if "type" in name.lower() else "content-disposition")
        if rng.random() < 0.5:
            param = rng.choice(["name", "filename", "NAME", "FileName", "name*", "filename*0", "nam", "x"])
            text = rng.choice(['"a.pdf"', "a.pdf", "=?utf-8?q?B=C3=A4r.pdf?=", "utf-8''B%C3%A4r.pdf", '"\xe4.pdf"'])
            value += rng.choice([";", "; ", ";\r\n "]) + param + "=" + text
        headers.append(f"{name}: {value}\r\n")
    return "".join(headers).encode("utf-8", "surrogateescape") + b"\r\nbody\r\n"


@pytest.mark.parametrize("seed", range(1500))
def test_the_file_name_is_read_as_without_the_name_check(seed, monkeypatch):
    from email.parser import BytesParser

    from mailbox.parsing import parts
    from mailbox.parsing.policy import parse_policy

    def answer() -> str | None:
        try:
            return parts.raw_filename(part)
        except Exception as exc:  # the walk reports such a part; the same failure is the same answer
            return type(exc).__name__

    raw = _filename_headers(random.Random(seed))
    part = BytesParser(policy=parse_policy()).parsebytes(raw)
    fast = answer()
    monkeypatch.setattr(parts, "_may_name", lambda part: True)
    assert fast == answer(), raw
