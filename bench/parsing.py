"""Parser benchmark: mailbox.parsing against the bare stdlib parse, on realistic hospital mail.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json):
  parse_p50_ms, parse_p95_ms         parse_message() on a ≈50 KB discharge letter (text + HTML + PDF)
  stdlib_parse_p95_ms                 email.message_from_bytes(policy=default), subject and sender read,
                                      every leaf part walked and decoded: the floor any parser pays
  parse_ratio                         parse_p95_ms / stdlib_parse_p95_ms (parse_ratio_p50: the same at p50,
                                      steadier on a busy machine); the two are timed by turns
  parse_many_recipients_p50_ms        parse_message() on a To: with 100,000 addresses (≈8 MB of header)
  parse_large_attachment_p50_ms       parse_message() on a mail with a 20 MB PDF
There is no stdlib figure for the 100,000 addresses: policy.default's address parser would need
about half a minute and gigabytes for them, which is why the parser switches to getaddresses().

Pure Python, no database: `make bench` or `.venv/bin/python bench/parsing.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbox.parsing import parse_message  # noqa: E402
from tests.mailbox import corpus  # noqa: E402

MANY_RECIPIENTS = 100_000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 2)


def stdlib_parse(raw: bytes) -> None:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    str(message["Subject"])
    str(message["From"])
    for part in message.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def timings_ms(function: Callable[[bytes], object], raw: bytes, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        function(raw)
    timings = []
    for _ in range(runs):
        # A collection in the middle of one run would be charged to that run only.
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            function(raw)
            timings.append((time.perf_counter() - start) * 1000)
        finally:
            gc.enable()
    return timings


def paired_timings_ms(
    first: Callable[[bytes], object], second: Callable[[bytes], object], raw: bytes, runs: int
) -> tuple[list[float], list[float]]:
    """Both functions' timings, run by turns: a busy moment on the machine costs both, not one of them."""
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for function, into in ((first, timings[0]), (second, timings[1])):
            into.extend(timings_ms(function, raw, 1, warmup=0))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs on the discharge letter")
    parser.add_argument("--big-runs", type=int, default=5, help="runs on the 100,000 recipients and the 20 MB PDF")
    args = parser.parse_args()

    letter = corpus.make_hospital_letter()
    parsed = parse_message(letter)
    assert parsed.text_body and parsed.html_body and len(parsed.attachments) == 1, "the letter must parse fully"
    timings_ms(parse_message, letter, 0)
    timings_ms(stdlib_parse, letter, 0)
    ours, stdlib = paired_timings_ms(parse_message, stdlib_parse, letter, args.runs)

    many = corpus.make_many_recipients(MANY_RECIPIENTS)
    assert len(parse_message(many).to) == MANY_RECIPIENTS
    many_ms = timings_ms(parse_message, many, args.big_runs, warmup=0)

    large = corpus.make_large_attachment()
    large_ms = timings_ms(parse_message, large, args.big_runs, warmup=0)

    result: dict = {
        "parse_p50_ms": pct(ours, 0.5),
        "parse_p95_ms": pct(ours, 0.95),
        "stdlib_parse_p50_ms": pct(stdlib, 0.5),
        "stdlib_parse_p95_ms": pct(stdlib, 0.95),
        "parse_ratio": round(pct(ours, 0.95) / pct(stdlib, 0.95), 2),
        "parse_ratio_p50": round(pct(ours, 0.5) / pct(stdlib, 0.5), 2),
        "parse_many_recipients_p50_ms": pct(many_ms, 0.5),
        "parse_large_attachment_p50_ms": pct(large_ms, 0.5),
    }
    result["meta"] = {
        "parsing_machine": f"{platform.machine()} {os.cpu_count()} CPUs, py{platform.python_version()}",
        "parsing_runs": args.runs,
        "parsing_big_runs": args.big_runs,
        "parsing_letter_bytes": len(letter),
        "parsing_letter": "multipart/mixed: text/plain + text/html alternatives (quoted-printable) + PDF (base64)",
        "parsing_many_recipients": MANY_RECIPIENTS,
        "parsing_many_recipients_bytes": len(many),
        "parsing_large_attachment_bytes": len(large),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
