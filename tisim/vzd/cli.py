"""Command line of the simulated VZD; ``python -m tisim vzd-…`` delegates here with the subcommand first.

    python -m tisim vzd-generate --entries N [--seed S] --out FILE.ldif
    python -m tisim vzd-serve --data-dir DIR [--entries N] [--seed S] [--port P] [--announce FILE]

vzd-serve generates the LDIF if DIR has none for that size and seed, slapadds it into a fresh mdb in DIR, starts
slapd on 127.0.0.1:P (0 = a free port), writes DIR/vzd.json ({"url", "base", "entries", "bind_dn",
"bind_password"}) and runs until SIGINT or SIGTERM, then stops slapd. ``--announce FILE`` writes the same to FILE
too: ``<tisim data dir>/vzd.json`` is where the simulated Account Manager looks for the directory it publishes
registered KIM addresses in (tisim.accountmanager.vzdlink). The bind DN is the test directory's root (loopback
only); the portal itself binds anonymously.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from tisim.config import write_json_atomic
from tisim.vzd.generate import BASE_DN, DATA_VERSION, generate_file
from tisim.vzd.slapd import ROOT_DN, ROOT_PW, SlapdServer


def _generate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = generate_file(out, args.entries, seed=args.seed)
    print(f"wrote {written} entries to {out} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def prepare(data_dir: Path, entries: int, seed: int, *, port: int = 0) -> SlapdServer:
    """Generate (if needed) and load a directory into data_dir; the returned server is not started yet."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # The data version is part of the name: a directory prepared by an older generator is rebuilt, not reused.
    ldif = data_dir / f"vzd-{entries}-seed{seed}-v{DATA_VERSION}.ldif"
    server = SlapdServer(data_dir, ldif, port=port)
    marker = data_dir / "loaded-from.txt"
    if not ldif.exists():
        for stale in data_dir.glob("vzd-*.ldif"):
            stale.unlink()
        generate_file(ldif, entries, seed=seed)
    if not (marker.exists() and marker.read_text() == ldif.name and server.loaded_marker.exists()):
        server.load()
        marker.write_text(ldif.name)
    return server


def _serve(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    server = prepare(data_dir, args.entries, args.seed, port=args.port)
    server.start()
    info = {"url": server.url, "base": BASE_DN, "entries": args.entries, "bind_dn": ROOT_DN, "bind_password": ROOT_PW}
    # Atomic: the demo and the Account Manager read these files while this process may still be writing them.
    write_json_atomic(data_dir / "vzd.json", info)
    if args.announce:
        write_json_atomic(Path(args.announce).resolve(), info)
    print(json.dumps(info), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not server.running:
                print("slapd exited unexpectedly", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tisim", description="Simulated VZD (OpenLDAP slapd)")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("vzd-generate", help="write generated VZD entries as LDIF")
    gen.add_argument("--entries", type=int, default=5000)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", required=True)
    gen.set_defaults(func=_generate)
    serve = sub.add_parser("vzd-serve", help="load generated entries into a private slapd and serve them")
    serve.add_argument("--data-dir", required=True)
    serve.add_argument("--entries", type=int, default=5000)
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument(
        "--announce", help="also write vzd.json here (e.g. the tisim data dir's, for the Account Manager)"
    )
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else sys.argv[1:])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
