"""The portal's web server and worker configured for a simulated Konnektor, as the demo does it (shared by the
signing browser tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conftest import PortalStack
from tisim.konnektor import KonnektorSimulator


@contextmanager
def signing_stack(tmp_path: Path, konnektor: KonnektorSimulator) -> Iterator[PortalStack]:
    """Started and stopped around the block; in the simulator's mode, with its QES CA as the trust (and in mode
    "basic" its server CA and login). Signed letters stay "signiert": their way out is tested in
    tests/mailbox/send/."""
    qes_ca = tmp_path / "qes-ca.pem"
    qes_ca.write_bytes(konnektor.qes_ca_pem)
    env = {
        "KIMPORTAL_KONNEKTOR_URL": konnektor.base_url,
        "KIMPORTAL_KONNEKTOR_MODE": konnektor.mode,
        "KIMPORTAL_KONNEKTOR_QES_CA": str(qes_ca),
        "KIMPORTAL_KONNEKTOR_MANDANT": konnektor.mandant_id,
        "KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM": konnektor.client_system_id,
        "KIMPORTAL_KONNEKTOR_TIMEOUT": "10",
        "KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT": "90",
        "KIMPORTAL_SIGNING_AUTO_SEND": "false",
    }
    if konnektor.mode == "basic":
        server_ca = tmp_path / "konnektor-ca.pem"
        server_ca.write_bytes(konnektor.server_ca_pem)
        env |= {
            "KIMPORTAL_KONNEKTOR_USER": konnektor.basic_user,
            "KIMPORTAL_KONNEKTOR_PASSWORD": konnektor.basic_password,
            "KIMPORTAL_KONNEKTOR_CA": str(server_ca),
        }
    stack = PortalStack(tmp_path, with_worker=True, extra_env=env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
