"""``python -m tisim accountmanager …``: registration codes and directory states of the simulated Account Manager.

python -m tisim accountmanager reg-code --address A [--telematik-id T] [--data-dir DIR | --config FILE]
python -m tisim accountmanager vzd (--down | --up) [--data-dir DIR | --config FILE]
python -m tisim accountmanager entry --telematik-id T (--inactive | --active) [--data-dir DIR | --config FILE]
python -m tisim accountmanager show [--data-dir DIR | --config FILE]

They change ``<data_dir>/accountmanager/state.json``, which a running simulator (``python -m tisim run``) reads on
every request, so they work while it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tisim.accountmanager.store import StateStore
from tisim.cm.username import is_valid_address


def _data_dir(args: argparse.Namespace) -> Path:
    from tisim.config import CMConfig, default_data_dir

    if args.data_dir:
        return Path(args.data_dir).resolve()
    if args.config:
        return CMConfig.load(Path(args.config)).data_dir
    return default_data_dir()


def _store(args: argparse.Namespace) -> StateStore:
    return StateStore(_data_dir(args) / "accountmanager")


def _location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the CM's config JSON (its data_dir is used)")
    parser.add_argument("--data-dir", help="simulator data directory (default: $TISIM_DATA_DIR or ./var/tisim)")


def add_parsers(sub: Any) -> None:
    am = sub.add_parser("accountmanager", help="the simulated Account Manager: registration codes, directory states")
    am_sub = am.add_subparsers(metavar="ACTION")

    code = am_sub.add_parser("reg-code", help="issue a registration code and initial password for an address")
    _location(code)
    code.add_argument("--address", required=True, help="the KIM address the code registers")
    code.add_argument("--telematik-id", help="only the SMC-B with this Telematik-ID may use the code")
    code.set_defaults(func=cmd_reg_code)

    vzd = am_sub.add_parser("vzd", help="make the directory unreachable for the Account Manager (502) or back")
    _location(vzd)
    state = vzd.add_mutually_exclusive_group(required=True)
    state.add_argument("--down", dest="available", action="store_false")
    state.add_argument("--up", dest="available", action="store_true")
    vzd.set_defaults(func=cmd_vzd)

    entry = am_sub.add_parser("entry", help="set an institution's directory entry inactive (423) or active")
    _location(entry)
    entry.add_argument("--telematik-id", required=True)
    active = entry.add_mutually_exclusive_group(required=True)
    active.add_argument("--inactive", dest="active", action="store_false")
    active.add_argument("--active", dest="active", action="store_true")
    entry.set_defaults(func=cmd_entry)

    show = am_sub.add_parser("show", help="print accounts and directory entries as JSON (no codes' passwords)")
    _location(show)
    show.set_defaults(func=cmd_show)


def cmd_reg_code(args: argparse.Namespace) -> int:
    if not is_valid_address(args.address):
        print(f"tisim: error: not a valid mail address: {args.address!r}", file=sys.stderr)
        return 1
    code = _store(args).issue_code(args.address, telematik_id=args.telematik_id)
    print(f"address: {code.address}")
    print(f"referenceID: {code.reference_id}")
    print(f"iniPassword: {code.initial_password}")
    return 0


def cmd_vzd(args: argparse.Namespace) -> int:
    _store(args).update(lambda s: s.__setitem__("vzd_available", args.available))
    return 0


def cmd_entry(args: argparse.Namespace) -> int:
    def change(state: dict[str, Any]) -> None:
        entry = state["directory"].setdefault(args.telematik_id, {"active": True, "mail": [], "kimData": []})
        entry["active"] = args.active

    _store(args).update(change)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    state = _store(args).read()
    print(
        json.dumps(
            {
                "accounts": state["accounts"],
                "directory": state["directory"],
                "vzd_available": state["vzd_available"],
                "codes": {
                    ref: {"address": c.get("address"), "used": c.get("used")} for ref, c in state["codes"].items()
                },
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0
