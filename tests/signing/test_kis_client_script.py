"""The sample client (scripts/kis_client.py, standard library only) as a subprocess against a live server: it posts
the demo's three eArztbriefe, reads a state, withdraws, downloads a signed result and reports a refusal; and the
demo's command that creates the connection and writes its token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from mailbox.storage import blob_put
from signing.api.services import kis_client_create, kis_token_revoke
from signing.api.tokens import token_hash
from signing.models import Draft, KisClient, KisToken, Signature
from tests.mailbox.factories import MailboxFactory
from tests.signing.documents import make_pdf

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kis_client.py"
KARDIOLOGIE = "kardiologie@klinikum-demo.kim.telematik-test"


@pytest.fixture
def mailbox():
    return MailboxFactory(display_name="Kardiologie", address=KARDIOLOGIE)


def _run(live_server, token_file: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_API_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", f"{live_server.url}/api/kis/v1", "--token-file", str(token_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_the_sample_client_posts_letters_and_follows_them(
    live_server, tmp_path, manager, mailbox, physician, assistant
):
    issued = kis_client_create(manager=manager, name="KIS Kardiologie (Demo)", mailboxes=[mailbox])
    token_file = tmp_path / "kis-token"
    token_file.write_text(issued.token + "\n")

    result = _run(live_server, token_file, "submit", "--demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("eingereicht") == 3
    drafts = Draft.objects.filter(source=Draft.Source.KIS).order_by("pk")
    assert [d.external_id.split(":", 1)[1] for d in drafts] == [
        "DEMO-ARZTBRIEF-1",
        "DEMO-ARZTBRIEF-2",
        "DEMO-ARZTBRIEF-3",
    ]
    assert {(d.document_type, d.author, d.signer, d.mailbox) for d in drafts} == {
        ("earztbrief", assistant, physician, mailbox)
    }
    assert all(d.is_pdf and d.size > 500 for d in drafts)

    # Posting them again creates nothing: the KIS's document ids make the call repeatable.
    again = _run(live_server, token_file, "submit", "--demo")
    assert again.returncode == 0 and again.stdout.count("lag schon vor") == 3
    assert Draft.objects.count() == 3

    status = _run(live_server, token_file, "status", "DEMO-ARZTBRIEF-1")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "draft"

    withdrawn = _run(live_server, token_file, "withdraw", "DEMO-ARZTBRIEF-3", "--reason", "doppelt")
    assert json.loads(withdrawn.stdout)["state"] == "withdrawn"

    draft = drafts[0]
    signed_pdf = make_pdf("signiert")
    Signature.objects.create(
        draft=draft,
        format=Signature.Format.PADES,
        sha256=blob_put(signed_pdf),
        size=len(signed_pdf),
        document_version=1,
        document_sha256=draft.sha256,
        signer_certificate=b"0",
        verified_at=draft.created_at,
    )
    Draft.objects.filter(pk=draft.pk).update(state=Draft.State.SIGNED)
    downloaded = _run(live_server, token_file, "download", "DEMO-ARZTBRIEF-1", cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    assert (tmp_path / "demo-arztbrief-1.pdf").read_bytes() == signed_pdf

    # A refusal: its code and German text on stderr, exit status 1.
    kis_token_revoke(manager=manager, token=KisToken.objects.get(client=issued.client))
    refused = _run(live_server, token_file, "status", "DEMO-ARZTBRIEF-1")
    assert refused.returncode == 1
    assert "token_revoked" in refused.stderr and "widerrufen" in refused.stderr


@pytest.mark.django_db
def test_the_client_needs_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_API_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "status", "X"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode != 0 and "Token" in result.stderr


@pytest.mark.django_db
def test_the_demo_command_writes_a_fresh_token_once(tmp_path, mailbox, manager):
    target = tmp_path / "demo" / "kis-token"
    call_command("kis_demo_client", "--token-file", str(target), "--mailbox", KARDIOLOGIE)
    token = target.read_text().strip()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    client = KisClient.objects.get()
    assert list(client.mailboxes.all()) == [mailbox]
    assert KisToken.objects.get(client=client).token_hash == token_hash(token)
    # Again: the connection and its still valid token stay.
    call_command("kis_demo_client", "--token-file", str(target), "--mailbox", KARDIOLOGIE)
    assert target.read_text().strip() == token and KisToken.objects.count() == 1
    # A revoked (or lost) token is replaced by a new one.
    kis_token_revoke(manager=manager, token=KisToken.objects.get())
    call_command("kis_demo_client", "--token-file", str(target), "--mailbox", KARDIOLOGIE)
    assert target.read_text().strip() != token and KisToken.objects.count() == 2


@pytest.mark.django_db
def test_each_demo_gets_its_own_token(tmp_path, mailbox):
    """Never a fixed secret: two fresh demos have different tokens."""
    first, second = tmp_path / "a", tmp_path / "b"
    call_command("kis_demo_client", "--token-file", str(first), "--mailbox", KARDIOLOGIE)
    KisToken.objects.all().delete()
    call_command("kis_demo_client", "--token-file", str(second), "--mailbox", KARDIOLOGIE)
    assert first.read_text() != second.read_text()
