"""KonnektorSimulator: the simulated Konnektor's state (cards, terminals, jobs, faults) and its lifecycle.

Used by ``python -m tisim konnektor-run`` and directly by tests (tests/fixtures/konnektor_sim.py). The
HTTP(S) side is in :mod:`tisim.konnektor.server`; the SOAP operations in :mod:`tisim.konnektor.operations`.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from tisim.config import write_json_atomic
from tisim.konnektor.cards import PIN_STATES, ComfortSession, SimCard
from tisim.konnektor.operations import Job, SignedRequest
from tisim.konnektor.pki import OID_ARZT, OID_KRANKENHAUS, Pki, iccsn_for
from tisim.konnektor.soap import CARD, CERT, EVT, PI, SDS, SI, SIG_V74, SIG_V75, Context, KonnektorFault, q
from tisim.konnektor.terminal import PinRound, Terminal
from tisim.tls import Certificate, ClientCertificate, ensure_client_ca, issue_client_certificate

RUNTIME_FILE = "konnektor.json"
MODES = ("plain", "basic", "cert")
MiB = 2**20

FAULT_KINDS = (
    "wrong-pin",
    "pin-timeout",
    "user-cancel",
    "card-removed",
    "card-busy",
    "transport-pin",
    "hba-other-user",
    "job-number-reused",
    "fail-request",
    "verify-failure",
)

# Komfortsignatur defaults: gemILF_PS "bis zu 250 qualifizierte elektronische Signaturen im Laufe eines Tages"
# (SAK_COMFORT_SIGNATURE_MAX 1..250, SAK_COMFORT_SIGNATURE_TIMER up to 24 h).
COMFORT_MAX = 250
COMFORT_TIMER = 24 * 3600.0

PinResult = Literal["ok", "wrong", "blocked", "timeout", "cancel", "stopped", "removed"]


@dataclass(frozen=True)
class Endpoint:
    service: str
    version: str
    namespace: str  # the schema namespace of the operation elements
    wsdl_namespace: str
    path: str


ENDPOINTS = (
    Endpoint("SignatureService", "7.5.6", SIG_V75, "http://ws.gematik.de/conn/SignatureService/WSDL/v7.5",
             "/service/v75/signatureservice"),
    Endpoint("SignatureService", "7.4.2", SIG_V74, "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4",
             "/service/v74/signatureservice"),
    Endpoint("EventService", "7.2.0", EVT, "http://ws.gematik.de/conn/EventService/WSDL/v7.2",
             "/service/eventservice"),
    Endpoint("CardService", "8.1.2", CARD, "http://ws.gematik.de/conn/CardService/WSDL/v8.1",
             "/service/cardservice"),
    Endpoint("CertificateService", "6.0.1", CERT, "http://ws.gematik.de/conn/CertificateService/WSDL/v6.0",
             "/service/certificateservice"),
    # ExternalAuthenticate's elements are in the SignatureService 7.4 namespace (as in the official WSDL).
    Endpoint("AuthSignatureService", "7.4.1", SIG_V74, "http://ws.gematik.de/conn/AuthSignatureService/WSDL/v7.4",
             "/service/authsignatureservice"),
)  # fmt: skip
ENDPOINT_BY_PATH = {e.path: e for e in ENDPOINTS}


@dataclass
class ArmedFault:
    kind: str
    times: int | None  # None: until cleared
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times, **self.params}


class KonnektorSimulator:
    def __init__(
        self,
        data_dir: Path,
        *,
        mode: str = "plain",
        host: str = "127.0.0.1",
        port: int = 0,
        auto_pin: str | None = None,
        basic_user: str = "portal",
        basic_password: str | None = None,
        signatures_per_pin: int = 0,
        max_requests_per_call: int = 250,
        max_document_bytes: int = 25 * MiB,
        max_call_bytes: int = 250 * MiB,
        mandant_id: str = "Mandant1",
        client_system_id: str = "KIMPortal",
        pin_timeout: float = 120.0,
        comfort_signature: bool = True,
        comfort_max: int = COMFORT_MAX,
        comfort_timer: float = COMFORT_TIMER,
    ) -> None:
        """``auto_pin``: the terminal types this PIN by itself whenever one is asked for (tests); None
        waits for a person (``terminal(ct).enter_pin``, ``python -m tisim terminal``) up to ``pin_timeout``.

        Komfortsignatur: ``comfort_signature`` is the administrator's switch (SAK_COMFORT_SIGNATURE; it works only
        in the modes "basic" and "cert", as on a real Konnektor); an activation allows ``comfort_max`` signatures
        (1..250) within ``comfort_timer`` seconds."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if not 1 <= comfort_max <= 250:
            raise ValueError("comfort_max must be between 1 and 250")
        if comfort_timer <= 0:
            raise ValueError("comfort_timer must be > 0 seconds")
        if signatures_per_pin < 0:
            raise ValueError("signatures_per_pin must be >= 0")
        self.data_dir = Path(data_dir).resolve()
        self.mode = mode
        self.host = host
        self._port = port
        self.auto_pin = auto_pin
        self.basic_user = basic_user
        # No fixed default password: whoever needs it reads it here or from konnektor.json.
        self.basic_password = basic_password if basic_password is not None else secrets.token_urlsafe(12)
        self.signatures_per_pin = signatures_per_pin
        self.max_requests_per_call = max_requests_per_call
        self.max_document_bytes = max_document_bytes
        self.max_call_bytes = max_call_bytes
        self.mandant_id = mandant_id
        self.client_system_id = client_system_id
        self.pin_timeout = pin_timeout
        self.comfort_signature = comfort_signature
        self.comfort_max = comfort_max
        self.comfort_timer = comfort_timer
        # UserIds of the last 1000 activations (a reused one is refused: 4270) and the UserIds of ended sessions
        # with the code a SignDocument under them gets (4271 used up or expired, 4278 deactivated or card pulled).
        self._comfort_user_ids: collections.deque[str] = collections.deque(maxlen=1000)
        self._ended_comfort: collections.OrderedDict[str, tuple[int, str]] = collections.OrderedDict()
        self.pki = Pki(self.data_dir / "konnektor" / "pki")
        self.terminals: dict[str, Terminal] = {}
        self.cards: list[SimCard] = []
        self._lock = threading.RLock()
        self._faults: list[ArmedFault] = []
        self._jobs: dict[str, Job] = {}
        # GetJobNumber must not repeat within 1000 calls; SignDocument refuses numbers used in the last 1000.
        self._issued_jobs: collections.deque[str] = collections.deque(maxlen=1000)
        self._used_jobs: collections.deque[str] = collections.deque(maxlen=1000)
        self._signed: list[SignedRequest] = []
        self._handle_counter = 0
        self._server: Any = None  # tisim.konnektor.server.KonnektorHTTPServer while running
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        from tisim.konnektor.server import serve

        if self._server is not None:
            raise RuntimeError("KonnektorSimulator is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server, self._thread = serve(self, self.host, self._port)
        self._port = self._server.server_address[1]
        self._write_runtime()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._lock:
            for job in list(self._jobs.values()):
                self._stop(job, "shutdown")
        server.shutdown()
        server.close_all()
        if thread is not None:
            thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> KonnektorSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        scheme = "http" if self.mode == "plain" else "https"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._port}"

    @property
    def server_ca_pem(self) -> bytes:
        return self.pki.server_ca.cert_pem

    @property
    def qes_ca_pem(self) -> bytes:
        return self.pki.qes_ca.cert_pem

    @property
    def client_ca(self) -> Certificate:
        # Shared with the Clientmodul simulator in the same data directory: one client CA per simulator.
        return ensure_client_ca(self.data_dir / "tls")

    def issue_client_certificate(self, cn: str, **dates: dt.datetime) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a client certificate accepted in mode "cert"."""
        issued: ClientCertificate = issue_client_certificate(self.client_ca, cn, **dates)
        return issued.cert_pem.encode("ascii"), issued.key_pem.encode("ascii")

    def runtime_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "base_url": self.base_url,
            "sds_url": self.base_url + "/connector.sds",
            "mode": self.mode,
            "host": self.host,
            "port": self._port,
            "pid": os.getpid(),
            "server_ca": str(self.pki.server_ca_path),
            "qes_ca": str(self.pki.qes_ca_path),
            "client_ca": str(self.client_ca.cert_path) if self.mode == "cert" else None,
            "mandant_id": self.mandant_id,
            "client_system_id": self.client_system_id,
            "workplaces": sorted(self.workplace_ids()),
            "comfort_signature": {
                "enabled": self.comfort_enabled,
                "max": self.comfort_max,
                "timer_seconds": self.comfort_timer,
            },
            "cards": [
                {
                    "card_type": c.card_type,
                    "holder_name": c.holder_name,
                    "telematik_id": c.telematik_id,
                    "iccsn": c.iccsn,
                    "ct_id": c.ct_id,
                    "generation": c.generation,
                }
                for c in self.cards
            ],
        }
        if self.mode == "basic":
            info["basic_user"] = self.basic_user
            info["basic_password"] = self.basic_password
        return info

    def _write_runtime(self) -> None:
        write_json_atomic(self.data_dir / RUNTIME_FILE, self.runtime_info())

    def remove_runtime_file(self) -> None:
        (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)

    # --- cards and terminals -------------------------------------------------------------------------

    def terminal(self, ct_id: str) -> Terminal:
        return self.terminals[ct_id]

    def add_terminal(self, ct_id: str, workplaces: Sequence[str]) -> Terminal:
        with self._lock:
            terminal = self.terminals.get(ct_id)
            if terminal is None:
                terminal = self.terminals[ct_id] = Terminal(ct_id, workplaces)
            else:
                terminal.workplaces.extend(w for w in workplaces if w not in terminal.workplaces)
            return terminal

    def workplace_ids(self) -> set[str]:
        return {w for t in self.terminals.values() for w in t.workplaces}

    def add_hba(
        self,
        holder_name: str,
        telematik_id: str,
        *,
        iccsn: str | None = None,
        pin: str = "123456",
        ct_id: str = "CT-1",
        workplaces: Sequence[str] = ("Arbeitsplatz-1",),
        pin_state: str = "VERIFIABLE",
        generation: str = "G2.0",
    ) -> SimCard:
        """An eHBA with an RSA key and a C.QES certificate (CN = holder, Telematik-ID in the admission
        extension) in terminal ``ct_id``, whose PIN pad serves ``workplaces``. ``generation="G2.1"`` adds an
        ECC key (brainpoolP256r1) and certificate: Crypt RSA_ECC and ECC then sign with it."""
        if generation not in ("G2.0", "G2.1"):
            raise ValueError("generation must be G2.0 or G2.1")
        return self._add_card(
            "HBA", holder_name, telematik_id, iccsn=iccsn, pin=pin, ct_id=ct_id, workplaces=workplaces,
            pin_state=pin_state, profession=("Ärztin/Arzt", OID_ARZT),
            algorithms=("RSA", "ECC") if generation == "G2.1" else ("RSA",),
        )  # fmt: skip

    def add_smcb(
        self,
        holder_name: str,
        telematik_id: str,
        *,
        iccsn: str | None = None,
        pin: str = "123456",
        ct_id: str = "CT-1",
        workplaces: Sequence[str] = ("Arbeitsplatz-1",),
        pin_state: str = "VERIFIABLE",
        aut_algorithms: Sequence[str] = ("ECC",),
    ) -> SimCard:
        """An SMC-B (institution card) with an ECC key whose certificate serves C.ENC and C.SIG, and C.AUT keys
        (``aut_algorithms``: "ECC" as in the TI, "RSA" too if asked) with certificates of the SMC-B CA, which
        ExternalAuthenticate signs with."""
        if not aut_algorithms or any(a not in ("ECC", "RSA") for a in aut_algorithms):
            raise ValueError("aut_algorithms: ECC and/or RSA")
        return self._add_card(
            "SMC-B", holder_name, telematik_id, iccsn=iccsn, pin=pin, ct_id=ct_id, workplaces=workplaces,
            pin_state=pin_state, profession=("Krankenhaus", OID_KRANKENHAUS), algorithms=("ECC",),
            aut_algorithms=tuple(aut_algorithms),
        )  # fmt: skip

    def _add_card(
        self,
        card_type: str,
        holder_name: str,
        telematik_id: str,
        *,
        iccsn: str | None,
        pin: str,
        ct_id: str,
        workplaces: Sequence[str],
        pin_state: str,
        profession: tuple[str, str],
        algorithms: tuple[str, ...],
        aut_algorithms: tuple[str, ...] = (),
    ) -> SimCard:
        if pin_state not in PIN_STATES:
            raise ValueError(f"pin_state must be one of {PIN_STATES}")
        iccsn = iccsn or iccsn_for(telematik_id, card_type)
        if len(iccsn) != 20 or not iccsn.isdigit():
            raise ValueError("an ICCSN has 20 digits")
        keys = {
            algorithm: self.pki.card_certificate(
                iccsn,
                holder_name=holder_name,
                telematik_id=telematik_id,
                profession_item=profession[0],
                profession_oid=profession[1],
                algorithm=algorithm,
            )
            for algorithm in algorithms
        }
        aut_keys = {
            algorithm: self.pki.auth_certificate(
                iccsn,
                holder_name=holder_name,
                telematik_id=telematik_id,
                profession_item=profession[0],
                profession_oid=profession[1],
                algorithm=algorithm,
            )
            for algorithm in aut_algorithms
        }
        with self._lock:
            if any(c.iccsn == iccsn for c in self.cards):
                raise ValueError(f"a card with ICCSN {iccsn} is already inserted")
            self.add_terminal(ct_id, workplaces)
            slots = {c.slot_id for c in self.cards if c.ct_id == ct_id and c.inserted}
            card = SimCard(
                card_handle=self._new_handle(card_type),
                card_type=card_type,
                iccsn=iccsn,
                telematik_id=telematik_id,
                holder_name=holder_name,
                ct_id=ct_id,
                slot_id=min(set(range(1, len(slots) + 2)) - slots),
                pin=pin,
                pin_state=pin_state,
                left_tries=0 if pin_state == "BLOCKED" else 3,
                keys=keys,
                aut_keys=aut_keys,
            )
            self.cards.append(card)
        if self.running:
            self._write_runtime()
        return card

    def _new_handle(self, card_type: str) -> str:
        self._handle_counter += 1
        suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        return f"{card_type}-{self._handle_counter}-{suffix}"

    def card_by_handle(self, handle: str) -> SimCard | None:
        with self._lock:
            return next((c for c in self.cards if c.inserted and c.card_handle == handle), None)

    def inserted_cards(self) -> list[SimCard]:
        with self._lock:
            return [c for c in self.cards if c.inserted]

    def remove_card(self, card: SimCard, *, reinsert: bool = False) -> None:
        """Pull the card; with ``reinsert`` it is put back at once and gets a new CardHandle."""
        with self._lock:
            card.inserted = False
            card.busy_with = None
            # A PIN asked for on this card is not typed any more: the job ends with "card removed" (4008).
            for job in self._jobs.values():
                if job.card is card and job.pin_round is not None and job.terminal is not None:
                    job.terminal.end(job.pin_round, "removed", "Karte gezogen")
            # Pulling the card resets it: a Komfortsignatur session ends with it.
            self.end_comfort(card, 4278, "Karte gezogen")
            if reinsert:
                self.insert_card(card)

    def insert_card(self, card: SimCard) -> None:
        with self._lock:
            card.card_handle = self._new_handle(card.card_type)
            card.insert_time = dt.datetime.now(dt.UTC).replace(microsecond=0)
            card.inserted = True

    def effective_pin_state(self, card: SimCard) -> str:
        if card.card_type == "HBA" and self.peek_fault("transport-pin") is not None:
            return "TRANSPORT_PIN"
        return card.pin_state

    # --- Komfortsignatur ------------------------------------------------------------------------------

    @property
    def comfort_enabled(self) -> bool:
        """SAK_COMFORT_SIGNATURE as it takes effect: switched on and a mode with client authentication."""
        return self.comfort_signature and self.mode != "plain"

    def comfort_user_id_used(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._comfort_user_ids

    def open_comfort(self, card: SimCard, ctx: Context) -> ComfortSession:
        assert ctx.user_id is not None
        with self._lock:
            session = ComfortSession(
                user_id=ctx.user_id,
                client_system_id=ctx.client_system_id,
                remaining=self.comfort_max,
                expires=time.monotonic() + self.comfort_timer,
            )
            card.comfort = session
            self._comfort_user_ids.append(ctx.user_id)
            self._ended_comfort.pop(ctx.user_id, None)
            return session

    def end_comfort(self, card: SimCard, code: int, reason: str) -> bool:
        """Close the card's session (if any); a later SignDocument under its UserId gets ``code``."""
        with self._lock:
            session = card.comfort
            if session is None:
                return False
            card.comfort = None
            self._ended_comfort[session.user_id] = (code, reason)
            while len(self._ended_comfort) > 1000:
                self._ended_comfort.popitem(last=False)
            return True

    def comfort_session(self, card: SimCard) -> ComfortSession | None:
        """The card's open session; one whose time ran out is ended here."""
        with self._lock:
            session = card.comfort
            if session is not None and session.time_left() <= 0:
                self.end_comfort(card, 4271, "Zeit der Komfortsignatur abgelaufen")
                return None
            return session

    def ended_comfort(self, user_id: str | None) -> tuple[int, str] | None:
        with self._lock:
            return self._ended_comfort.get(user_id) if user_id else None

    def count_comfort_signature(self, card: SimCard, session: ComfortSession) -> None:
        with self._lock:
            session.remaining -= 1
            if session.remaining <= 0 and card.comfort is session:
                self.end_comfort(card, 4271, "Anzahl der Komfortsignaturen ausgeschöpft")

    # --- faults ---------------------------------------------------------------------------------------

    def arm_fault(self, kind: str, *, times: int | None = None, **params: Any) -> None:
        """Arm a fault (kinds: FAULT_KINDS). ``times``: how often it strikes (None: the kind's default —
        once, or until cleared for "transport-pin"; 0: until cleared)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is None:
            times = 0 if kind == "transport-pin" else 1
        with self._lock:
            self._faults.append(ArmedFault(kind, None if times == 0 else times, dict(params)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def peek_fault(self, kind: str) -> ArmedFault | None:
        with self._lock:
            return next((f for f in self._faults if f.kind == kind), None)

    def take_fault(self, kind: str, when: Callable[[ArmedFault], bool] | None = None) -> ArmedFault | None:
        """The first armed fault of ``kind`` (that ``when`` accepts), used up once."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and (when is None or when(fault)):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
            return None

    # --- jobs -----------------------------------------------------------------------------------------

    def new_job_number(self) -> str:
        with self._lock:
            while True:
                number = "".join(secrets.choice(string.ascii_uppercase) for _ in range(3))
                number += "-" + "".join(secrets.choice(string.digits) for _ in range(3))
                if number not in self._issued_jobs and number not in self._used_jobs:
                    self._issued_jobs.append(number)
                    return number

    def use_job_number(self, job_number: str) -> bool:
        """Mark ``job_number`` used by a SignDocument; False if it was used within the last 1000."""
        with self._lock:
            if job_number in self._used_jobs or job_number in self._jobs:
                return False
            self._used_jobs.append(job_number)
            return True

    @contextmanager
    def running_job(self, job: Job) -> Iterator[Job]:
        with self._lock:
            self._jobs[job.job_number] = job
        try:
            yield job
        finally:
            with self._lock:
                self._jobs.pop(job.job_number, None)

    def stop_job(self, job_number: str) -> bool:
        """StopSignature: True if the job is running or was run recently (then nothing is left to stop)."""
        with self._lock:
            job = self._jobs.get(job_number)
            if job is not None:
                self._stop(job, "StopSignature")
                return True
            return job_number in self._used_jobs

    def _stop(self, job: Job, reason: str) -> None:
        job.stopped = True
        if job.pin_round is not None and job.terminal is not None:
            job.terminal.end(job.pin_round, "stopped", reason)

    @contextmanager
    def reserve(self, card: SimCard, holder: str) -> Iterator[SimCard]:
        with self._lock:
            if card.busy_with is not None:
                raise KonnektorFault(4060, f"Karte belegt durch {card.busy_with}")
            card.busy_with = holder
        try:
            yield card
        finally:
            with self._lock:
                if card.busy_with == holder:
                    card.busy_with = None

    def ask_pin(self, card: SimCard, terminal: Terminal, lines: list[str], *, job: Job | None) -> PinResult:
        """Show the prompt, wait for the person at the pad (or ``auto_pin``), check the PIN."""
        if card.pin_state == "BLOCKED":
            return "blocked"
        try:
            pin_round: PinRound = terminal.begin(
                lines, job_number=job.job_number if job else None, card_handle=card.card_handle
            )
        except RuntimeError as exc:
            # Another card in the same terminal is being asked for its PIN: one PIN pad, one prompt at a time.
            raise KonnektorFault(4060, f"Kartenterminal {terminal.ct_id} belegt") from exc
        with self._lock:
            if job is not None:
                job.pin_round = pin_round
                if job.stopped:
                    terminal.end(pin_round, "stopped", "StopSignature")
        if self.take_fault("pin-timeout") is not None:
            terminal.end(pin_round, "timeout")
        elif self.take_fault("user-cancel") is not None:
            terminal.end(pin_round, "cancel")
        elif self.auto_pin is not None and pin_round.outcome is None:
            try:
                terminal.enter_pin(self.auto_pin)
            except RuntimeError:
                pass  # ended meanwhile (StopSignature): the outcome below says how
        outcome = terminal.await_round(pin_round, self.pin_timeout)
        if job is not None:
            job.pin_round = None
        if outcome == "timeout":
            terminal.show(["Timeout bei der PIN-Eingabe"])
            return "timeout"
        if outcome == "cancel":
            terminal.show(["Abbruch durch den Benutzer"])
            return "cancel"
        if outcome == "stopped":
            terminal.show(["Signatur abgebrochen"])
            return "stopped"
        if outcome == "removed":
            terminal.show(["Karte entfernt"])
            return "removed"
        with self._lock:
            wrong = self.take_fault("wrong-pin") is not None or pin_round.pin != card.pin
            if wrong:
                card.register_wrong_pin()
            else:
                card.register_right_pin()
        terminal.show(["PIN falsch oder gesperrt!"] if wrong else ["PIN erfolgreich verifiziert!"])
        return "wrong" if wrong else "ok"

    def record_signed(self, signed: list[SignedRequest]) -> None:
        with self._lock:
            self._signed.extend(signed)

    @property
    def signed_requests(self) -> list[SignedRequest]:
        with self._lock:
            return list(self._signed)

    # --- connector.sds -----------------------------------------------------------------------------------

    def service_directory(self) -> bytes:
        root = etree.Element(q(SDS, "ConnectorServices"), nsmap={None: PI, "ns2": SDS, "ns3": SI})
        info = etree.SubElement(root, q(PI, "ProductInformation"))
        etree.SubElement(info, q(PI, "InformationDate")).text = (
            dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        )
        type_info = etree.SubElement(info, q(PI, "ProductTypeInformation"))
        etree.SubElement(type_info, q(PI, "ProductType")).text = "Konnektor"
        etree.SubElement(type_info, q(PI, "ProductTypeVersion")).text = "5.0.8"
        ident = etree.SubElement(info, q(PI, "ProductIdentification"))
        etree.SubElement(ident, q(PI, "ProductVendorID")).text = "TISIM"
        etree.SubElement(ident, q(PI, "ProductCode")).text = "KONSIM"
        version = etree.SubElement(ident, q(PI, "ProductVersion"))
        local = etree.SubElement(version, q(PI, "Local"))
        etree.SubElement(local, q(PI, "HWVersion")).text = "1.0.0"
        etree.SubElement(local, q(PI, "FWVersion")).text = "5.0.8"
        misc = etree.SubElement(info, q(PI, "ProductMiscellaneous"))
        etree.SubElement(misc, q(PI, "ProductVendorName")).text = "tisim"
        etree.SubElement(misc, q(PI, "ProductName")).text = "Konnektor-Simulator"
        etree.SubElement(root, q(SDS, "TLSMandatory")).text = "false" if self.mode == "plain" else "true"
        etree.SubElement(root, q(SDS, "ClientAutMandatory")).text = "false" if self.mode == "plain" else "true"
        services = etree.SubElement(root, q(SI, "ServiceInformation"))
        by_name: dict[str, etree._Element] = {}
        for endpoint in ENDPOINTS:
            versions = by_name.get(endpoint.service)
            if versions is None:
                service = etree.SubElement(services, q(SI, "Service"), Name=endpoint.service)
                etree.SubElement(service, q(SI, "Abstract")).text = f"{endpoint.service} (simuliert)"
                versions = by_name[endpoint.service] = etree.SubElement(service, q(SI, "Versions"))
            v = etree.SubElement(
                versions, q(SI, "Version"), TargetNamespace=endpoint.wsdl_namespace, Version=endpoint.version
            )
            etree.SubElement(v, q(SI, "Abstract")).text = f"{endpoint.service} {endpoint.version}"
            url = self.base_url + endpoint.path
            # One listener, one scheme: without TLS both entries name the plain URL (EndpointTLS is mandatory).
            if self.mode == "plain":
                etree.SubElement(v, q(SI, "Endpoint"), Location=url)
            etree.SubElement(v, q(SI, "EndpointTLS"), Location=url)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
