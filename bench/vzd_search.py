"""VZD search latency: the portal's search service vs. raw ldap3, on a real slapd with 200,000 entries.

    .venv/bin/python bench/vzd_search.py [--entries 200000] [--runs 10] [--data-dir var/vzd-bench]

Generates the LDIF and slapadds it into var/vzd-bench/ on first use (~2 minutes) and reuses both afterwards.
For each of 20 typical queries three paths run alternately:
- portal, cold: parse → escaped filter → pooled client → rank → certificate lookup for the shown page, with an
  empty certificate cache (``vzd_search_cold_*``);
- raw: the same filter and attribute list through a plain ldap3 connection (``vzd_search_raw_*``);
- portal, as in production: the same query again, certificate states of the shown page now cached per
  (uid, changeDateTime) (``vzd_search_p50_ms``/``vzd_search_p95_ms``, ``vzd_search_ratio``).
p50/p95 over all samples are printed as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")

KARD = "1.3.6.1.4.1.19376.3.276.1.5.4:KARD"


def queries():
    from directory.query import Criteria

    return [
        Criteria(q="müller"),
        Criteria(q="Klinikum Demo"),
        Criteria(q="Kardiologie Berlin"),
        Criteria(q="10117"),
        Criteria(q="Schmidt Hamburg"),
        Criteria(q="Apotheke München"),
        Criteria(q="Praxis Weber"),
        Criteria(q="aufnahme@klinikum-demo.kim.telematik-test"),
        Criteria(q="1-200000000000004711"),
        Criteria(q="Krankenhaus Köln"),
        Criteria(q="Zahnarztpraxis Meyer"),
        Criteria(q="Becker"),
        Criteria(q="Löwen-Apotheke"),
        Criteria(q="AOK Bayern"),
        Criteria(q="Physiotherapie Fischer"),
        Criteria(q="Hoffmann Innere"),
        Criteria(q="Universitätsklinikum"),
        Criteria(name="Schulz", place="Berlin", kind="arztpraxis"),
        Criteria(kind="krankenhaus", place="Hamburg", kim_only=True),
        Criteria(specialty=KARD, place="München"),
    ]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--data-dir", default=str(ROOT / "var" / "vzd-bench"))
    args = parser.parse_args(argv)

    import django

    django.setup()
    import ldap3
    from django.conf import settings

    from directory import certcache
    from directory.entries import LIST_ATTRIBUTES
    from directory.query import build_filter
    from directory.selectors import directory_search
    from tisim.vzd.cli import prepare

    data_dir = Path(args.data_dir).resolve() / f"{args.entries}-seed{args.seed}"
    started = time.monotonic()
    server = prepare(data_dir, args.entries, args.seed)
    prepared_s = time.monotonic() - started
    server.start()
    try:
        settings.KIMPORTAL_VZD_URL = server.url
        raw = ldap3.Connection(ldap3.Server(server.url, get_info=ldap3.NONE), auto_bind=True, check_names=False)
        cases = queries()
        # Move Django's import-time objects out of the collector's way (what a preloading app server does), so
        # that gen-2 collections of unrelated objects do not land in random samples of either path.
        gc.collect()
        gc.freeze()
        filters = [build_filter(c).ldap_filter for c in cases]
        portal_ms: list[float] = []
        cold_ms: list[float] = []
        raw_ms: list[float] = []
        hits: list[int] = []
        for run in range(args.runs + 1):  # run 0 warms caches and connections, not counted
            for criteria, flt in zip(cases, filters, strict=True):
                certcache.clear()  # cold: the certificate lookup runs (not timed)
                t0 = time.perf_counter()
                outcome = directory_search(criteria)
                t1 = time.perf_counter()
                raw.search(settings.KIMPORTAL_VZD_BASE_DN, flt, attributes=list(LIST_ATTRIBUTES))
                _ = raw.response
                t2 = time.perf_counter()
                directory_search(criteria)  # warm: certificate states of the shown page are cached
                t3 = time.perf_counter()
                if outcome.error:
                    raise SystemExit(f"portal search failed for {criteria}: {outcome.error}")
                if run:
                    cold_ms.append((t1 - t0) * 1000)
                    raw_ms.append((t2 - t1) * 1000)
                    portal_ms.append((t3 - t2) * 1000)
                else:
                    hits.append(outcome.total)
        raw.unbind()
    finally:
        server.stop()

    p95, raw_p95, cold_p95 = percentile(portal_ms, 95), percentile(raw_ms, 95), percentile(cold_ms, 95)
    result = {
        "vzd_search_p50_ms": round(statistics.median(portal_ms), 2),
        "vzd_search_p95_ms": round(p95, 2),
        "vzd_search_raw_p50_ms": round(statistics.median(raw_ms), 2),
        "vzd_search_raw_p95_ms": round(raw_p95, 2),
        "vzd_search_ratio": round(p95 / raw_p95, 3),
        "vzd_search_cold_p50_ms": round(statistics.median(cold_ms), 2),
        "vzd_search_cold_p95_ms": round(cold_p95, 2),
        "vzd_search_cold_ratio": round(cold_p95 / raw_p95, 3),
        "meta": {
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, py{platform.python_version()}",
            "vzd_search_entries": args.entries,
            "vzd_search_queries": len(cases),
            "vzd_search_runs": args.runs,
            "vzd_search_samples": len(portal_ms),
            "vzd_search_hits_per_query": hits,
            "vzd_search_prepare_s": round(prepared_s, 1),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
