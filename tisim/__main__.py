"""``python -m tisim``: run the simulated Clientmodul, send mail as another participant, arm faults.

python -m tisim run   [--config FILE] [--data-dir DIR] [--smtp-port N] [--pop3-port N]
                      [--security implicit|starttls|plain] [--require-client-cert | --no-client-cert]
python -m tisim client-cert --cn NAME --out DIR [--days N] [--config FILE | --data-dir DIR]
python -m tisim send  --from A --to B [--to C] [--cc D] --subject S [--body TEXT]
                      [--dienstkennung D] [--attach FILE ...]
                      [--fault integrity|decryption|4018|unencrypted|keep-result-headers|bad-signature]
                      [--sign [--signer NAME]] [--config FILE | --data-dir DIR] [--password P]
python -m tisim send  --eml FILE [--config FILE | --data-dir DIR]
python -m tisim fault drop-retr --address A [--after-bytes N] [--times K]
python -m tisim fault retr --address A (--message K | --uidl U) [--mode err|drop|stall|short]
                      [--code SYS/TEMP] [--after-bytes N] [--times K]
python -m tisim fault login --address A --code AUTH|IN-USE|LOGIN-DELAY|SYS/TEMP|SYS/PERM [--times K]
python -m tisim fault smtp --address A|* --mode 421|timeout|451|drop-after-data|timeout-after-data [--times K]
python -m tisim fault rcpt --address RECIPIENT [--code 450|451|452|550|554] [--times K]
python -m tisim fault clear | list
python -m tisim vzd-...   (the VZD simulator, tisim.vzd.cli)
python -m tisim konnektor-run [--data-dir DIR] [--port 8090] [--mode plain|basic|cert] [--auto-pin PIN]
                      [--cards FILE] [--signatures-per-pin N]   (the simulated Konnektor, tisim.konnektor)
                      [--comfort-max N] [--comfort-timer SECONDS] [--no-comfort]   (Komfortsignatur limits)
python -m tisim terminal (--pin PIN | --cancel) [--ct CT-1] [--data-dir DIR]
python -m tisim konnektor-fault (--kind KIND [--times N] [--param K=V ...] | --clear | --list) [--data-dir DIR]
python -m tisim accountmanager reg-code --address A [--telematik-id T]   (the simulated Account Manager,
                      started by `run` next to the CM; also: accountmanager vzd|entry|show; tisim.accountmanager.cli)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Subcommands import what they need when they run: `vzd-*` must not pay for aiosmtpd and friends.
if TYPE_CHECKING:
    from tisim.accountmanager import AccountManagerSimulator
    from tisim.cm.faults import FaultStore
    from tisim.cm.server import CMSimulator


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0].startswith("vzd-"):
        return _delegate_vzd(args_list)
    parser = _parser()
    args = parser.parse_args(args_list)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))


def _delegate_vzd(argv: list[str]) -> int:
    # Imported lazily: the VZD simulator is a separate module with its own dependencies.
    try:
        from tisim.vzd.cli import main as vzd_main
    except ModuleNotFoundError as exc:
        if exc.name not in ("tisim.vzd", "tisim.vzd.cli"):
            raise
        print(f"tisim: {argv[0]}: the VZD simulator (tisim.vzd.cli) is not available", file=sys.stderr)
        return 2
    return int(vzd_main(argv) or 0)


def _fail(message: str) -> int:
    print(f"tisim: error: {message}", file=sys.stderr)
    return 1


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config JSON (default: <data-dir>/config.json)")
    parser.add_argument("--data-dir", help="simulator data directory (default: $TISIM_DATA_DIR or ./var/tisim)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tisim", description="TI simulator (KIM Clientmodul)")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the Clientmodul's SMTP and POP3 servers")
    _add_location(run)
    run.add_argument("--smtp-port", type=int, help="override the config (0 = any free port)")
    run.add_argument("--pop3-port", type=int, help="override the config (0 = any free port)")
    run.add_argument(
        "--security",
        choices=["implicit", "starttls", "plain"],
        help="override the config: implicit TLS (SMTPS/POP3S), STARTTLS/STLS on plain ports, or no TLS",
    )
    client_cert = run.add_mutually_exclusive_group()
    client_cert.add_argument(
        "--require-client-cert",
        dest="require_client_cert",
        action="store_const",
        const=True,
        help="demand a TLS client certificate from the simulator's client CA (mTLS)",
    )
    client_cert.add_argument("--no-client-cert", dest="require_client_cert", action="store_const", const=False)
    run.add_argument(
        "--am-port",
        type=int,
        help="the Account Manager's HTTPS port (default 8444; any free port when the CM's SMTP port is 0)",
    )
    run.add_argument("--no-accountmanager", action="store_true", help="run the CM without the Account Manager")
    run.add_argument("-v", "--verbose", action="store_true", help="log every SMTP/POP3 session")
    run.set_defaults(func=cmd_run)

    issue = sub.add_parser("client-cert", help="issue a TLS client certificate the simulator accepts")
    _add_location(issue)
    issue.add_argument("--cn", required=True, help="common name, e.g. the client system's name")
    issue.add_argument("--out", required=True, help="directory for client-cert.pem and client-key.pem")
    issue.add_argument("--days", type=int, default=825, help="validity in days")
    issue.set_defaults(func=cmd_client_cert)

    send = sub.add_parser("send", help="send a mail as another simulated participant")
    _add_location(send)
    send.add_argument("--from", dest="sender", help="sending account (its password comes from the config)")
    send.add_argument("--to", action="append", default=[])
    send.add_argument("--cc", action="append", default=[])
    send.add_argument("--subject")
    send.add_argument("--body", default="")
    send.add_argument("--dienstkennung", help="X-KIM-Dienstkennung, e.g. 'Arztbrief;VHitG-Versand;V1.2'")
    send.add_argument("--attach", action="extend", nargs="+", default=[], metavar="FILE")
    send.add_argument(
        "--fault",
        # tisim.cm.messages.RECEIVE_FAULTS; spelled out so `--help` needs no import of the CM.
        choices=["integrity", "decryption", "4018", "unencrypted", "keep-result-headers", "bad-signature"],
        help="what the receiving CM delivers instead: integrity/decryption failure notice, 4018 notice, "
        "the mail passed through unencrypted, or sender-written result headers kept; bad-signature: the "
        "attachments are signed (as --sign) and changed afterwards, so the signature does not verify",
    )
    send.add_argument(
        "--sign",
        action="store_true",
        help="a physician of the sending practice signs the attachments (QES, tisim.signedmail): a PDF as PAdES, "
        "any other file with a detached .p7s beside it",
    )
    send.add_argument("--signer", help="the signing physician's name (default: 'Dr. med. Klaus Müller')")
    send.add_argument("--eml", help="send this prepared RFC 5322 message unchanged")
    send.add_argument("--password", help="instead of the config's password")
    send.set_defaults(func=cmd_send)

    fault = sub.add_parser("fault", help="arm or clear injectable faults")
    fault_sub = fault.add_subparsers(metavar="FAULT")
    drop = fault_sub.add_parser("drop-retr", help="cut the connection in the middle of the next RETR(s)")
    _add_location(drop)
    drop.add_argument("--address", required=True)
    drop.add_argument("--after-bytes", type=int, default=1024)
    drop.add_argument("--times", type=int, default=1, help="how many RETRs to break (0 = until cleared)")
    drop.set_defaults(func=cmd_fault_drop_retr)
    retr = fault_sub.add_parser("retr", help="make RETR of one message fail: -ERR, cut, stall or short")
    _add_location(retr)
    retr.add_argument("--address", required=True)
    which = retr.add_mutually_exclusive_group(required=True)
    which.add_argument("--message", type=int, help="the K-th message now in the maildrop (1 = oldest)")
    which.add_argument("--uidl", help="the message's UIDL")
    retr.add_argument("--mode", choices=["err", "drop", "stall", "short"], default="err")
    retr.add_argument("--code", default="SYS/TEMP", help="response code for --mode err ('' for none)")
    retr.add_argument("--after-bytes", type=int, default=0, help="octets sent before drop/stall/short")
    retr.add_argument("--times", type=int, default=0, help="how many RETRs to fail (0 = until cleared)")
    retr.set_defaults(func=cmd_fault_retr)
    login = fault_sub.add_parser("login", help="answer the next login(s) with -ERR [CODE] (RFC 2449)")
    _add_location(login)
    login.add_argument("--address", required=True)
    login.add_argument("--code", required=True, choices=["AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"])
    login.add_argument("--times", type=int, default=1, help="how many logins to refuse (0 = until cleared)")
    login.set_defaults(func=cmd_fault_login)
    smtp = fault_sub.add_parser("smtp", help="break the next submission(s) of a sender (see tisim.cm.faults)")
    _add_location(smtp)
    smtp.add_argument("--address", required=True, help="the sending (authenticated) address, or * for any")
    smtp.add_argument(
        "--mode", required=True, choices=["421", "timeout", "451", "drop-after-data", "timeout-after-data"]
    )
    smtp.add_argument("--times", type=int, default=1, help="how many submissions to break (0 = until cleared)")
    smtp.set_defaults(func=cmd_fault_smtp)
    rcpt = fault_sub.add_parser("rcpt", help="refuse the next RCPT TO(s) of one recipient (see tisim.cm.faults)")
    _add_location(rcpt)
    rcpt.add_argument("--address", required=True, help="the recipient")
    rcpt.add_argument("--code", default="450", choices=["450", "451", "452", "550", "554"])
    rcpt.add_argument("--times", type=int, default=1, help="how many RCPTs to refuse (0 = until cleared)")
    rcpt.set_defaults(func=cmd_fault_rcpt)
    clear = fault_sub.add_parser("clear", help="remove all faults")
    _add_location(clear)
    clear.set_defaults(func=cmd_fault_clear)
    listing = fault_sub.add_parser("list", help="print the armed faults as JSON")
    _add_location(listing)
    listing.set_defaults(func=cmd_fault_list)

    from tisim.konnektor.cli import add_parsers as add_konnektor_parsers

    add_konnektor_parsers(sub)

    from tisim.accountmanager.cli import add_parsers as add_accountmanager_parsers

    add_accountmanager_parsers(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from tisim.cm.server import CMSimulator
    from tisim.config import resolve_config

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    config = resolve_config(args.config, args.data_dir, create=True)
    if args.security is not None:
        config.tls, config.starttls = args.security != "plain", args.security == "starttls"
    if args.require_client_cert is not None:
        config.require_client_cert = args.require_client_cert
    if config.require_client_cert and not config.tls:
        return _fail("a client certificate needs TLS (--security implicit or starttls)")
    sim = CMSimulator(
        config.data_dir,
        accounts=config.accounts,
        tls=config.tls,
        starttls=config.tls and config.starttls,
        require_client_cert=config.require_client_cert,
        host=config.host,
        smtp_port=config.smtp_port if args.smtp_port is None else args.smtp_port,
        pop3_port=config.pop3_port if args.pop3_port is None else args.pop3_port,
        allow_plain_username=config.allow_plain_username,
        config_path=config.path,
    )
    stop = threading.Event()
    # Both signals just wake the main thread; the shutdown itself runs below, outside the handler.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim.start()
    except OSError as exc:
        return _fail(f"cannot listen on {config.host}: {exc}")
    am = None
    if not args.no_accountmanager:
        requested_smtp = config.smtp_port if args.smtp_port is None else args.smtp_port
        am = _start_accountmanager(args, sim, config.host, any_port=requested_smtp == 0)
        if am is None:
            sim.stop()
            sim.remove_runtime_file()
            return 1
    try:
        tls = f"{'STARTTLS' if sim.starttls else 'TLS'} sha256={sim.fingerprint}" if sim.tls else "no TLS"
        if sim.require_client_cert:
            tls += f", client certificate required (CA {sim.data_dir / 'tls' / 'client-ca.pem'})"
        print(
            f"tisim CM: SMTP {sim.host}:{sim.smtp_port}, POP3 {sim.host}:{sim.pop3_port}, {tls}, "
            f"{len(config.accounts)} accounts, data {sim.data_dir}",
            flush=True,
        )
        if am is not None:
            print(f"tisim Account Manager: {am.base_url} (CA {am.ca_path})", flush=True)
        # Timed: Python runs signal handlers in the main thread only, and a signal another thread received does
        # not wake an untimed wait (Ctrl-C in the demo: SIGINT and at once SIGTERM; tests/tisim/test_stop_signals.py).
        while not stop.wait(0.5):
            pass
    finally:
        if am is not None:
            am.stop()
            am.remove_runtime_file()
        sim.stop()
        # A stale cm.json would send clients to ports nobody listens on.
        sim.remove_runtime_file()
    return 0


def _start_accountmanager(
    args: argparse.Namespace, cm: CMSimulator, host: str, *, any_port: bool
) -> AccountManagerSimulator | None:
    from tisim.accountmanager import DEFAULT_PORT, AccountManagerSimulator, SimulatorAccounts

    # A CM on any free port (tests) gets an Account Manager on any free port too: a running demo keeps 8444.
    port = args.am_port if args.am_port is not None else (0 if any_port else DEFAULT_PORT)
    am = AccountManagerSimulator(cm.data_dir, accounts=SimulatorAccounts(cm), host=host, port=port)
    try:
        am.start()
    except OSError as exc:
        _fail(f"the Account Manager cannot listen on {host}:{port}: {exc} (--am-port N or --no-accountmanager)")
        return None
    return am


def cmd_client_cert(args: argparse.Namespace) -> int:
    import datetime as dt

    from tisim.config import CMConfig, default_data_dir
    from tisim.tls import ensure_client_ca, issue_client_certificate

    if args.days < 1:
        return _fail("--days must be at least 1")
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
    elif args.config:
        try:
            data_dir = CMConfig.load(Path(args.config)).data_dir
        except FileNotFoundError as exc:
            return _fail(str(exc))
    else:
        data_dir = default_data_dir()
    now = dt.datetime.now(dt.UTC)
    issued = issue_client_certificate(
        ensure_client_ca(data_dir / "tls"), args.cn, not_after=now + dt.timedelta(days=args.days)
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "client-cert.pem").write_text(issued.cert_pem, encoding="ascii")
    key_path = out / "client-key.pem"
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_text(issued.key_pem, encoding="ascii")
    print(out / "client-cert.pem")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from tisim.cm.send import SendError, build_message, envelope_of, send_raw, smtp_endpoint
    from tisim.config import resolve_config

    try:
        config = resolve_config(args.config, args.data_dir, create=False)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    if args.eml:
        if args.sender or args.to or args.cc or args.subject or args.attach or args.fault or args.sign:
            return _fail("--eml sends the file as it is; do not combine it with --from/--to/--cc/--subject/...")
        try:
            raw = Path(args.eml).read_bytes()
            sender, recipients, message_id = envelope_of(raw)
        except (OSError, SendError) as exc:
            return _fail(str(exc))
    else:
        missing = [
            name
            for name, value in (("--from", args.sender), ("--to", args.to), ("--subject", args.subject))
            if not value
        ]
        if missing:
            return _fail(f"missing {', '.join(missing)} (or use --eml FILE)")
        sign = args.sign or args.fault == "bad-signature"
        if sign and not args.attach:
            return _fail("--sign and --fault bad-signature sign the attachments: give at least one --attach FILE")
        if args.signer and not sign:
            return _fail("--signer names who signs: use it with --sign")
        try:
            with _signed_attachments(args, config.data_dir, sign) as attachments:
                msg = build_message(
                    sender=args.sender,
                    to=args.to,
                    cc=args.cc,
                    subject=args.subject,
                    body=args.body,
                    dienstkennung=args.dienstkennung,
                    attachments=attachments,
                    # bad-signature is the sender's own doing, not something the receiving CM delivers.
                    fault=None if args.fault == "bad-signature" else args.fault,
                )
        except OSError as exc:
            return _fail(f"cannot read attachment: {exc}")
        raw, sender, message_id = msg.as_bytes(), args.sender, str(msg["Message-ID"])
        recipients = [*args.to, *args.cc]
    password = args.password if args.password is not None else config.accounts.get(sender.lower())
    if password is None:
        return _fail(f"no account {sender} in {config.path}")
    try:
        send_raw(smtp_endpoint(config.data_dir), sender=sender, password=password, recipients=recipients, raw=raw)
    except SendError as exc:
        return _fail(str(exc))
    print(message_id or "")
    return 0


@contextlib.contextmanager
def _signed_attachments(args: argparse.Namespace, data_dir: Path, sign: bool) -> Iterator[list[Path]]:
    """The attachments as files to attach: as given, or signed (tisim.signedmail) into a temporary folder."""
    paths = [Path(p) for p in args.attach]
    if not sign:
        yield paths
        return
    from tisim.signedmail import DEFAULT_SIGNER, sign_files

    signed = sign_files(
        [(path.name, path.read_bytes()) for path in paths],
        data_dir=data_dir,
        signer_name=args.signer or DEFAULT_SIGNER,
        tamper=args.fault == "bad-signature",
    )
    with tempfile.TemporaryDirectory(prefix="tisim-signed-") as tmp:
        out = []
        for item in signed:
            target = Path(tmp) / item.name
            target.write_bytes(item.content)
            out.append(target)
        yield out


def _fault_store(args: argparse.Namespace) -> FaultStore:
    from tisim.cm.faults import FaultStore
    from tisim.config import CMConfig, default_data_dir

    if args.data_dir:
        return FaultStore(Path(args.data_dir).resolve())
    if args.config:
        return FaultStore(CMConfig.load(Path(args.config)).data_dir)
    return FaultStore(default_data_dir())


def cmd_fault_drop_retr(args: argparse.Namespace) -> int:
    try:
        _fault_store(args).add(
            args.address, "drop_retr", after_bytes=args.after_bytes, times=None if args.times == 0 else args.times
        )
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    return 0


def cmd_fault_retr(args: argparse.Namespace) -> int:
    from tisim.cm.maildrop import MaildropStore

    store = _fault_store(args)
    uidl = args.uidl
    if uidl is None:
        # Resolved now, so the fault stays with that message when others before it are deleted.
        listed = MaildropStore(store.path.parent / "maildrops").uidls(args.address)
        if not 1 <= args.message <= len(listed):
            return _fail(f"--message {args.message}: the maildrop of {args.address} holds {len(listed)} messages")
        uidl = listed[args.message - 1]
    try:
        store.add_retr(
            args.address,
            uidl,
            mode=args.mode,
            code=args.code,
            after_bytes=args.after_bytes,
            times=None if args.times == 0 else args.times,
        )
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    print(uidl)
    return 0


def cmd_fault_login(args: argparse.Namespace) -> int:
    try:
        _fault_store(args).add_login(args.address, code=args.code, times=None if args.times == 0 else args.times)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    return 0


def cmd_fault_smtp(args: argparse.Namespace) -> int:
    try:
        _fault_store(args).add_smtp(args.address, args.mode, times=None if args.times == 0 else args.times)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    return 0


def cmd_fault_rcpt(args: argparse.Namespace) -> int:
    try:
        _fault_store(args).add_rcpt(args.address, args.code, times=None if args.times == 0 else args.times)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    return 0


def cmd_fault_clear(args: argparse.Namespace) -> int:
    _fault_store(args).clear()
    return 0


def cmd_fault_list(args: argparse.Namespace) -> int:
    print(json.dumps(_fault_store(args).load(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
