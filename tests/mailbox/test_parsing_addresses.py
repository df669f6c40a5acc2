"""Address headers: the plain-shape shortcut gives exactly what policy.default's parser gives.

``plain_addresses`` answers without running the stdlib's address parser for the shapes nearly all
mail has. Random values built from plain and near-miss pieces (quotes, comments, dots in odd
places, groups, encoded words, 8-bit, routes, literals) check that whenever it answers, its answer
is the stdlib's; for everything else it must step aside (None).
"""

from __future__ import annotations

import email.policy
import random
import time

import pytest

from mailbox.parsing.headers import parse_addresses, plain_addresses


def _stdlib(value: str) -> list[tuple[str, str]]:
    header = email.policy.default.header_factory("To", value)
    return [(a.display_name, a.addr_spec) for a in header.addresses]


_PIECES = [
    "anna",
    "Anna",
    "Dr.",
    "Müller",
    "o'neil",
    "a+b",
    "x-y",
    ".",
    "..",
    "@",
    "<",
    ">",
    ",",
    ";",
    ":",
    '"',
    "(",
    ")",
    "\\",
    "[",
    "]",
    " ",
    "  ",
    "\t",
    "=?utf-8?q?M=C3=BCller?=",
    "klinik.kim.telematik-test",
    "arzt.kim.telematik-test",
]


def _random_value(rng: random.Random) -> str:
    def addr() -> str:
        local = rng.choice(["anna", "a.b", "x+y", "o'neil", "anna", "a.b", "a..b", ".a", "a.", "ä"])
        domain = rng.choice(["klinik.kim.telematik-test", "x.de", "y", "x.de", "b..c", "[1.2.3.4]", "x.de."])
        return f"{local}@{domain}"

    def mailbox() -> str:
        shape = rng.randrange(8)
        if shape == 0:
            return addr()
        if shape == 1:
            return f"<{addr()}>"
        name = " ".join(rng.choice([*_PIECES[:7], "A.B", "A.", "Sender"]) for _ in range(rng.randint(1, 4)))
        space = rng.choice(["", " ", "  ", "\t"])
        if shape < 7:
            return f"{name}{space}<{addr()}>"
        # Near misses: a random piece dropped in somewhere.
        text = f"{name}{space}<{addr()}>"
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(_PIECES) + text[at:]

    parts = [mailbox() for _ in range(rng.randint(1, 3))]
    glue = rng.choice([",", ", ", " , ", ",,", ",\t"])
    value = glue.join(parts)
    if rng.random() < 0.2:
        value = rng.choice([",", " ", ""]) + value + rng.choice([",", " ", ""])
    return value


@pytest.mark.parametrize("seed", range(1500))
def test_the_plain_shortcut_answers_as_the_stdlib_does(seed):
    value = _random_value(random.Random(seed))
    plain = plain_addresses(value) if value.isascii() else None
    if plain is not None:
        assert plain == _stdlib(value), value


def _plain_value(rng: random.Random) -> str:
    words = ["anna", "Anna", "Dr.", "o'neil", "a+b", "x-y", "A.B", "A.", "Sender", "{x}", "=?", "?="]
    mailboxes = []
    for _ in range(rng.randint(1, 5)):
        local = rng.choice(["anna", "a.b", "x+y", "o=neil"])
        address = f"{local}@{rng.choice(['klinik.kim.telematik-test', 'x.de', 'y'])}"
        shape = rng.randrange(3)
        if shape == 0:
            mailboxes.append(address)
        elif shape == 1:
            mailboxes.append(f"<{address}>")
        else:
            name = rng.choice([" ", "  ", "\t"]).join(rng.choice(words) for _ in range(rng.randint(1, 4)))
            mailboxes.append(f"{name}{rng.choice([' ', '  ', '']) if not name.endswith('.') else ' '}<{address}>")
    return rng.choice([",", ", ", " ,\t"]).join(mailboxes)


@pytest.mark.parametrize("seed", range(500))
def test_plain_values_take_the_shortcut_with_the_stdlib_answer(seed):
    value = _plain_value(random.Random(seed))
    if "=?" in value:
        assert plain_addresses(value) is None
    else:
        assert plain_addresses(value) == _stdlib(value), value


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Dr. Anna Sender <a.s@arzt.kim.telematik-test>", [("Dr. Anna Sender", "a.s@arzt.kim.telematik-test")]),
        ("klinik.empfang@klinik.kim.telematik-test", [("", "klinik.empfang@klinik.kim.telematik-test")]),
        ("a@b.c, Hans  Meier <h@x.de>,", [("", "a@b.c"), ("Hans Meier", "h@x.de")]),
        ("<a@b.c>", [("", "a@b.c")]),
    ],
)
def test_plain_shapes_take_the_shortcut(value, expected):
    assert plain_addresses(value) == expected
    assert parse_addresses("To", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        '"Müller, Hans" <h@x.de>',
        "=?utf-8?q?M=C3=BCller?= <m@x.de>",
        "Anna (Station 3) <a@b.c>",
        "Gruppe: a@b.c, d@e.f;",
        "a..b@c.d",
        "a@[1.2.3.4]",
        "Dr.<a@b.c>",
        "A <a@b..c>",
        "not an address",
        "",
    ],
)
def test_other_shapes_go_to_the_full_parser(value):
    assert plain_addresses(value) is None


def test_a_hostile_plain_looking_value_costs_linear_time():
    # 200 000 words without an address, and 100 000 addresses: the shortcut must not backtrack itself to death.
    for value in ("a " * 200_000 + "<", "a@b.c, " * 100_000, " \t" * 100_000 + "a", "a." * 100_000 + "@b"):
        started = time.process_time()
        plain_addresses(value)
        assert time.process_time() - started < 2.0
