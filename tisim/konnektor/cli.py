"""``python -m tisim konnektor-run`` and ``python -m tisim terminal``.

konnektor-run reads its cards from ``<data-dir>/konnektor-cards.json`` (written with the demo cards on first
start: the eHBA of "Dr. med. Anna Sommer" for the demo user ``aerztin`` and the SMC-B of "Klinikum Demo")
and writes ``<data-dir>/konnektor.json`` for the portal's demo settings and the terminal command. A card entry:
``{"type": "HBA" | "SMC-B", "holder_name", "telematik_id", "iccsn"?, "pin"?, "ct_id"?, "workplaces"?,
"pin_state"?, "generation"?: "G2.0" | "G2.1", "aut_algorithms"?: ["ECC", "RSA"] (SMC-B)}``; the file also names
``mandant_id`` and ``client_system_id``, and may hold the Komfortsignatur settings ``"comfort_signature":
{"enabled": true, "max": 250, "timer_seconds": 86400}`` (the command line's --comfort-* options win).

terminal plays the person at the card terminal of a running simulator: it waits until the terminal asks for
a PIN, prints the display (compare the job number with the portal's page) and types the PIN. The same in a
browser: ``<base_url>/tisim/terminal`` (loopback only).
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tisim.config import default_data_dir, write_json_atomic

# Spelled out (not imported from tisim.konnektor.simulator) so `--help` loads no lxml or cryptography;
# a test checks they agree.
MODES = ("plain", "basic", "cert")
RUNTIME_FILE = "konnektor.json"
FAULT_KINDS = (
    "wrong-pin", "pin-timeout", "user-cancel", "card-removed", "card-busy", "transport-pin", "hba-other-user",
    "job-number-reused", "fail-request", "verify-failure",
)  # fmt: skip

CARDS_FILE = "konnektor-cards.json"
DEFAULT_PORT = 8090
DEMO_CARDS: dict[str, Any] = {
    "mandant_id": "Mandant1",
    "client_system_id": "KIMPortal",
    "cards": [
        {
            "type": "HBA",
            "holder_name": "Dr. med. Anna Sommer",
            "telematik_id": "1-20014567890",
            "pin": "123456",
            "ct_id": "CT-1",
            "workplaces": ["Arbeitsplatz-1"],
        },
        {
            "type": "SMC-B",
            "holder_name": "Klinikum Demo",
            "telematik_id": "5-2-123456789",
            "pin": "123456",
            "ct_id": "CT-1",
            "workplaces": ["Arbeitsplatz-1"],
        },
    ],
}


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("konnektor-run", help="run the simulated Konnektor (connector.sds and SOAP services)")
    run.add_argument("--data-dir", help="simulator data directory (default: $TISIM_DATA_DIR or ./var/tisim)")
    run.add_argument("--cards", help=f"cards JSON (default: <data-dir>/{CARDS_FILE}, created with demo cards)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 = any free port (default {DEFAULT_PORT})")
    run.add_argument("--mode", choices=MODES, default="plain",
                     help="plain: HTTP; basic: HTTPS + Basic auth; cert: HTTPS + client certificate")  # fmt: skip
    run.add_argument("--auto-pin", help="type this PIN by itself whenever one is asked for")
    run.add_argument("--basic-user", default="portal")
    run.add_argument("--basic-password", help="default: generated, written to konnektor.json")
    run.add_argument("--signatures-per-pin", type=int, default=0, help="split batches: a PIN entry per N")
    run.add_argument("--pin-timeout", type=float, default=300.0, help="seconds the terminal waits for a PIN")
    run.add_argument("--comfort-max", type=int, help="signatures per Komfortsignatur activation (1..250; default 250)")
    run.add_argument("--comfort-timer", type=float, help="seconds a Komfortsignatur lasts (default 86400 = 24 h)")
    run.add_argument("--no-comfort", action="store_true", help="Komfortsignatur switched off (SAK_COMFORT_SIGNATURE)")
    run.set_defaults(func=cmd_konnektor_run)

    term = sub.add_parser("terminal", help="type the PIN at a running simulated Konnektor's card terminal")
    term.add_argument("--data-dir", help="the simulator's data directory (where konnektor.json is)")
    term.add_argument("--ct", default="CT-1", help="card terminal id (default CT-1)")
    action = term.add_mutually_exclusive_group(required=True)
    action.add_argument("--pin", help="the PIN to type")
    action.add_argument("--cancel", action="store_true", help="press the cancel key instead")
    term.add_argument("--wait", type=float, default=300.0, help="seconds to wait for a PIN request")
    term.set_defaults(func=cmd_terminal)

    fault = sub.add_parser("konnektor-fault", help="arm or clear faults of a running simulated Konnektor")
    fault.add_argument("--data-dir", help="the simulator's data directory (where konnektor.json is)")
    which = fault.add_mutually_exclusive_group(required=True)
    which.add_argument("--kind", choices=FAULT_KINDS, help="the fault to arm")
    which.add_argument("--clear", action="store_true", help="remove all armed faults")
    which.add_argument("--list", action="store_true", help="print the armed faults as JSON")
    fault.add_argument("--times", type=int, help="how often it strikes (0 = until cleared; default once)")
    fault.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. request_id=brief-3 (fail-request), after=2 (card-removed), code=4093 (card-busy, verify-failure)",
    )
    fault.set_defaults(func=cmd_konnektor_fault)


def _fail(message: str) -> int:
    print(f"tisim: error: {message}", file=sys.stderr)
    return 1


def _data_dir(value: str | None) -> Path:
    return Path(value).resolve() if value else default_data_dir()


def load_cards(path: Path) -> dict[str, Any]:
    if not path.exists():
        write_json_atomic(path, DEMO_CARDS)
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def cmd_konnektor_run(args: argparse.Namespace) -> int:
    from tisim.konnektor.simulator import KonnektorSimulator

    data_dir = _data_dir(args.data_dir)
    cards_path = Path(args.cards).resolve() if args.cards else data_dir / CARDS_FILE
    try:
        config = load_cards(cards_path)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {cards_path}: {exc}")
    comfort = config.get("comfort_signature") or {}
    try:
        comfort_options: dict[str, Any] = {
            "comfort_signature": not args.no_comfort and bool(comfort.get("enabled", True)),
            "comfort_max": int(args.comfort_max if args.comfort_max is not None else comfort.get("max", 250)),
            "comfort_timer": float(
                args.comfort_timer if args.comfort_timer is not None else comfort.get("timer_seconds", 86400)
            ),
        }
        sim = KonnektorSimulator(
            data_dir,
            mode=args.mode,
            host=args.host,
            port=args.port,
            auto_pin=args.auto_pin,
            basic_user=args.basic_user,
            basic_password=args.basic_password,
            signatures_per_pin=args.signatures_per_pin,
            pin_timeout=args.pin_timeout,
            mandant_id=str(config.get("mandant_id", "Mandant1")),
            client_system_id=str(config.get("client_system_id", "KIMPortal")),
            **comfort_options,
        )
        for card in config.get("cards", []):
            common: dict[str, Any] = {
                "iccsn": card.get("iccsn"),
                "pin": str(card.get("pin", "123456")),
                "ct_id": str(card.get("ct_id", "CT-1")),
                "workplaces": [str(w) for w in card.get("workplaces", ["Arbeitsplatz-1"])],
                "pin_state": str(card.get("pin_state", "VERIFIABLE")),
            }
            if card.get("type", "HBA") == "HBA":
                generation = str(card.get("generation", "G2.0"))
                sim.add_hba(str(card["holder_name"]), str(card["telematik_id"]), generation=generation, **common)
            else:
                aut = [str(a) for a in card.get("aut_algorithms", ["ECC"])]
                sim.add_smcb(str(card["holder_name"]), str(card["telematik_id"]), aut_algorithms=aut, **common)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        return _fail(f"{cards_path}: {exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim.start()
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    try:
        print(
            f"tisim Konnektor: {sim.base_url}/connector.sds, mode {sim.mode}, "
            f"{len(sim.cards)} cards, data {data_dir / RUNTIME_FILE}, terminal page {sim.base_url}/tisim/terminal",
            flush=True,
        )
        # Timed: Python runs signal handlers in the main thread only, and a signal another thread received does
        # not wake an untimed wait (Ctrl-C in the demo: SIGINT and at once SIGTERM; tests/tisim/test_stop_signals.py).
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        sim.remove_runtime_file()
    return 0


def _control_context(runtime: dict[str, Any]) -> ssl.SSLContext | None:
    if runtime.get("mode", "plain") == "plain":
        return None
    return ssl.create_default_context(cafile=str(runtime["server_ca"]))


def _control(runtime: dict[str, Any], method: str, path: str, payload: dict[str, Any] | None = None,
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
    data = json.dumps(payload).encode() if payload is not None else None
    url = str(runtime["base_url"]) + path
    if not url.startswith(("http://", "https://")):
        raise urllib.error.URLError(f"not an HTTP URL: {url}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=_control_context(runtime)) as response:  # noqa: S310
        result: dict[str, Any] = json.loads(response.read())
        return result


def cmd_terminal(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args.data_dir)
    try:
        runtime = json.loads((data_dir / RUNTIME_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _fail(f"no running simulated Konnektor: {data_dir / RUNTIME_FILE} is missing")
    path = f"/tisim/terminals/{urllib.parse.quote(args.ct, safe='')}"
    try:
        state = _control(runtime, "GET", f"{path}?wait={args.wait}", timeout=args.wait + 30)
        if not state.get("waiting"):
            return _fail(f"terminal {args.ct}: no PIN request within {args.wait:g} s")
        print("\n".join(state["display"]), flush=True)
        print("Abbruch" if args.cancel else "PIN.QES: " + "*" * len(args.pin), flush=True)
        if args.cancel:
            after = _control(runtime, "POST", f"{path}/cancel", {})
        else:
            after = _control(runtime, "POST", f"{path}/pin", {"pin": args.pin})
    except urllib.error.HTTPError as exc:
        return _fail(f"terminal {args.ct}: {exc.code} {exc.read().decode(errors='replace').strip()}")
    except (urllib.error.URLError, OSError) as exc:
        return _fail(f"cannot reach the simulated Konnektor at {runtime.get('base_url')}: {exc}")
    # The display after the entry: "PIN erfolgreich verifiziert!" or "PIN falsch oder gesperrt!".
    print("\n".join(after["display"]), flush=True)
    return 0


def _param(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise ValueError(f"--param {raw!r}: expected KEY=VALUE")
    if value.isdigit():
        return key, int(value)
    if value in ("true", "false"):
        return key, value == "true"
    return key, value


def cmd_konnektor_fault(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args.data_dir)
    try:
        runtime = json.loads((data_dir / RUNTIME_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _fail(f"no running simulated Konnektor: {data_dir / RUNTIME_FILE} is missing")
    try:
        if args.clear:
            result = _control(runtime, "DELETE", "/tisim/faults")
        elif args.list:
            result = _control(runtime, "GET", "/tisim/faults")
        else:
            payload: dict[str, Any] = {"kind": args.kind, **dict(_param(p) for p in args.param)}
            if args.times is not None:
                payload["times"] = args.times
            result = _control(runtime, "POST", "/tisim/faults", payload)
    except ValueError as exc:
        return _fail(str(exc))
    except urllib.error.HTTPError as exc:
        return _fail(f"{exc.code} {exc.read().decode(errors='replace').strip()}")
    except (urllib.error.URLError, OSError) as exc:
        return _fail(f"cannot reach the simulated Konnektor at {runtime.get('base_url')}: {exc}")
    print(json.dumps(result["faults"]))
    return 0
