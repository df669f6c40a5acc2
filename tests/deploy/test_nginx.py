"""nginx in front of gunicorn, set up as docs/deploy.md says: deploy/nginx/kimportal.conf rendered with envsubst,
TLS on a free loopback port, gunicorn with deploy/gunicorn.conf.py (two uvicorn workers) and static serving off.

Each check fails without a line of the config: pages and their CSP come through the proxy, /static is answered
by nginx from STATIC_ROOT (gunicorn never sees it), a websocket passes the Upgrade headers and gets a live event,
and the forwarded scheme and client address reach Django.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mailbox.models import OutgoingMessage
from mailbox.services.ingest import message_ingest
from tests.e2e.conftest import ROOT, portal_env
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tisim.vzd.slapd import free_port

SITE_CONF = ROOT / "deploy" / "nginx" / "kimportal.conf"
NGINX = "/usr/sbin/nginx"
PLACEHOLDER = re.compile(r"\$\{(KIMPORTAL_[A-Z_]+)\}")
STATIC_FILE = "js/portal.js"


def render_site(values: dict[str, str]) -> str:
    """The docs' command: envsubst replaces the ${KIMPORTAL_...} placeholders and leaves nginx's $variables."""
    template = SITE_CONF.read_text()
    names = set(PLACEHOLDER.findall(template))
    assert names == set(values), f"placeholders in {SITE_CONF.name}: {sorted(names)}"
    shell_format = " ".join(f"${{{name}}}" for name in sorted(names))
    rendered = subprocess.run(
        ["envsubst", shell_format], input=template, env={**os.environ, **values}, capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    assert not PLACEHOLDER.search(rendered.stdout)
    return rendered.stdout


def main_conf(tmp: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf gives the site file, with every writable path in *tmp*."""
    # As root the workers would run as nobody, who cannot enter pytest's 0700 temp directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"error_log {tmp}/error.log info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {tmp}/access.log;\n"
        f"{temp_paths}"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    def cookies(self) -> dict[str, str]:
        return dict(v.split(";", 1)[0].split("=", 1) for v in self.headers.get_all("Set-Cookie") or [])


@dataclass
class Edge:
    tmp: Path
    https_port: int
    http_port: int
    web_port: int
    tls: ssl.SSLContext
    static_root: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        port: int | None = None,
        source: str = "127.0.0.1",
    ) -> Response:
        """One request: through nginx over TLS by default, or in plain HTTP to *port* (nginx's or gunicorn's)."""
        conn: http.client.HTTPConnection
        if port is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.tls, timeout=10, source_address=(source, 0)
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def web_access_log(self) -> str:
        path = self.tmp / "gunicorn-access.log"
        return path.read_text() if path.exists() else ""

    def wait_web_logged(self, needle: str, timeout: float = 10) -> str:
        """gunicorn writes its access line as the response starts; poll briefly for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.web_access_log()
            if needle in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in gunicorn's access log:\n{self.web_access_log()[-2000:]}")

    def logs(self) -> str:
        names = ("gunicorn.log", "gunicorn-access.log", "error.log", "nginx.out")
        return "\n".join(
            f"--- {n}\n{(self.tmp / n).read_text(errors='replace')[-3000:]}" for n in names if (self.tmp / n).exists()
        )


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(edge: Edge, timeout: float = 30) -> None:
    """Until nginx answers /login/ with gunicorn's page (both must be up); fail early if either exits."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for proc in edge.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}\n{edge.logs()}")
        try:
            last = edge.request("/login/").status
            if last == 200:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"no page through nginx (last: {last})\n{edge.logs()}")


@pytest.fixture(scope="module")
def edge(django_db_setup, tmp_path_factory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    web_port, https_port, http_port = free_port(), free_port(), free_port()
    env = portal_env(tmp)
    env.update(
        KIMPORTAL_BIND=f"127.0.0.1:{web_port}",
        KIMPORTAL_WEB_WORKERS="2",
        KIMPORTAL_SERVE_STATIC="false",
        KIMPORTAL_ACCESS_LOG=str(tmp / "gunicorn-access.log"),
        SECURE_COOKIES="true",
    )
    # STATIC_ROOT is $KIMPORTAL_DATA_DIR/staticfiles; the admin's command fills it.
    collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(collect, cwd=ROOT, env=env, check=True)
    static_root = Path(env["KIMPORTAL_DATA_DIR"]) / "staticfiles"
    assert (static_root / STATIC_FILE).is_file()

    cert, key = _self_signed(tmp)
    site = tmp / "kimportal.conf"
    site.write_text(
        render_site(
            {
                "KIMPORTAL_SERVER_NAME": "127.0.0.1 localhost",
                "KIMPORTAL_HTTPS_LISTEN": f"127.0.0.1:{https_port}",
                "KIMPORTAL_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                "KIMPORTAL_BIND": env["KIMPORTAL_BIND"],
                "KIMPORTAL_DATA_DIR": env["KIMPORTAL_DATA_DIR"],
                "KIMPORTAL_TLS_CERT": str(cert),
                "KIMPORTAL_TLS_KEY": str(key),
            }
        )
    )
    conf = tmp / "nginx.conf"
    conf.write_text(main_conf(tmp, site))
    nginx = [NGINX, "-e", str(tmp / "error.log"), "-p", f"{tmp}/", "-c", str(conf)]
    nginx += ["-g", f"daemon off; pid {tmp}/nginx.pid;"]
    checked = subprocess.run([*nginx, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    tls = ssl.create_default_context(cafile=str(cert))
    edge = Edge(tmp, https_port, http_port, web_port, tls, static_root)
    try:
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
        gunicorn.append("kimportal.asgi:application")
        with (tmp / "gunicorn.log").open("wb") as out:
            edge.procs.append(subprocess.Popen(gunicorn, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        with (tmp / "nginx.out").open("wb") as out:
            edge.procs.append(subprocess.Popen(nginx, stdout=out, stderr=subprocess.STDOUT))
        _wait_ready(edge)
        yield edge
    finally:
        _stop(edge.procs)


def _login(edge: Edge, username: str, password: str) -> Response:
    """The login form through nginx, as a browser at https://127.0.0.1:<port> posts it."""
    page = edge.request("/login/")
    csrf_cookie = page.cookies()["csrftoken"]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert token is not None
    form = urlencode({"csrfmiddlewaretoken": token.group(1).decode(), "username": username, "password": password})
    return edge.request(
        "/login/",
        method="POST",
        body=form.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Origin": edge.origin,
        },
    )


def test_pages_come_from_django_over_tls_and_plain_http_is_redirected(edge):
    page = edge.request("/login/")
    assert page.status == 200
    assert b'name="username"' in page.body
    # Django's policy, untouched by the proxy.
    assert "script-src 'self' 'nonce-" in page.header("Content-Security-Policy")
    assert page.header("Strict-Transport-Security") == "max-age=31536000"

    plain = edge.request("/login/?next=/", port=edge.http_port)
    assert plain.status == 301
    assert plain.header("Location") == "https://127.0.0.1/login/?next=/"


def test_static_files_are_served_by_nginx_from_static_root(edge):
    served = edge.request(f"/static/{STATIC_FILE}")
    assert served.status == 200
    assert served.body == (edge.static_root / STATIC_FILE).read_bytes()
    # Headers only nginx's /static/ location adds.
    assert served.header("Cache-Control") == "max-age=3600"
    assert served.header("Expires")
    assert served.header("Strict-Transport-Security") == "max-age=31536000"
    assert served.header("X-Content-Type-Options") == "nosniff"
    assert "javascript" in served.header("Content-Type")

    # gunicorn logged a later request through nginx but never the static one.
    marker = uuid.uuid4().hex
    assert edge.request(f"/login/?probe={marker}").status == 200
    assert "/static/" not in edge.wait_web_logged(marker)
    # And the app itself would not have served it (KIMPORTAL_SERVE_STATIC=false).
    assert edge.request(f"/static/{STATIC_FILE}", port=edge.web_port).status != 200


@pytest.mark.django_db(transaction=True)
def test_forwarded_scheme_and_client_reach_django(edge):
    UserFactory(username="proxy-user")
    # Django's CSRF check accepts Origin https://host only for a request it sees as https (is_secure()):
    # that is nginx's X-Forwarded-Proto, trusted by uvicorn from loopback (no SECURE_PROXY_SSL_HEADER needed).
    logged_in = _login(edge, "proxy-user", "pw-secret-123")
    assert logged_in.status == 302, logged_in.body[:500]
    assert "sessionid" in logged_in.cookies()

    # The same form posted to gunicorn directly is plain http to Django, so that origin is refused.
    page = edge.request("/login/", port=edge.web_port)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert token is not None
    form = urlencode({"csrfmiddlewaretoken": token.group(1).decode(), "username": "proxy-user", "password": "x"})
    direct = edge.request(
        "/login/",
        method="POST",
        port=edge.web_port,
        body=form.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={page.cookies()['csrftoken']}",
            "Origin": edge.origin,
        },
    )
    assert direct.status == 403

    # The client address Django gets (REMOTE_ADDR, from the ASGI scope uvicorn logs) is the one that connected
    # to nginx, here 127.0.0.2; an X-Forwarded-For sent by the client itself is overwritten, not believed.
    marker = uuid.uuid4().hex
    spoofed = edge.request(f"/login/?probe={marker}", source="127.0.0.2", headers={"X-Forwarded-For": "203.0.113.7"})
    assert spoofed.status == 200
    line = next(x for x in edge.wait_web_logged(marker).splitlines() if marker in x)
    assert line.startswith("127.0.0.2:"), line
    assert "203.0.113.7" not in line


def inbox_socket(edge: Edge, session: str):
    """The inbox page's websocket through nginx, as a logged-in browser opens it."""
    return connect(
        f"wss://127.0.0.1:{edge.https_port}/ws/inbox/",
        ssl=edge.tls,
        origin=edge.origin,
        additional_headers={"Cookie": f"sessionid={session}"},
        open_timeout=10,
        close_timeout=5,
    )


@pytest.mark.django_db(transaction=True)
def test_websocket_through_nginx_receives_a_live_event(edge):
    user = UserFactory(username="ws-user")
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=user)
    logged_in = _login(edge, "ws-user", "pw-secret-123")
    assert logged_in.status == 302
    session = logged_in.cookies()["sessionid"]

    with inbox_socket(edge, session) as socket:
        # The consumer joined the mailbox's group before accepting: the event cannot slip past.
        message = message_ingest(mailbox=box, uidl="through-nginx", raw=MAIL_WITH_PDF)
        needle = f'id="msg-{message.pk}"'
        deadline = time.monotonic() + 10
        frames = []
        while time.monotonic() < deadline:
            try:
                frame = socket.recv(timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            frames.append(frame)
            if needle in frame:
                break
        assert any(needle in f for f in frames), frames
        assert any("Entlassbrief Müller" in f for f in frames)


@pytest.mark.django_db(transaction=True)
def test_an_oversized_websocket_frame_closes_that_socket_and_nothing_else(edge):
    """A logged-in page (or someone with its cookie) sends a 4 MiB frame: the server refuses it at the protocol
    level (1009) before the consumer parses it on the worker's one event loop, and the others go on."""
    UserFactory(username="ws-hostile")
    logged_in = _login(edge, "ws-hostile", "pw-secret-123")
    session = logged_in.cookies()["sessionid"]

    with inbox_socket(edge, session) as hostile, inbox_socket(edge, session) as neighbour:
        # The server closes while the frame is still arriving: the client sees it on sending or on reading.
        with pytest.raises(ConnectionClosed) as closed:
            hostile.send('{"watch": "' + "1," * (2 * 2**20) + '1"}')
            hostile.recv(timeout=10)
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
        # The same worker still serves: a normal frame is answered.
        neighbour.send('{"watch": "1,2,3"}')
        assert 'id="live-watching"' in neighbour.recv(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_an_attachment_of_several_megabytes_reaches_the_draft_and_other_bodies_stay_small(edge):
    """nginx allowed 1 MiB for every request: any attachment over it got nginx's English 413, never the portal.
    The upload location takes what the view takes (500 MiB); elsewhere a body stays small."""
    user = UserFactory(username="upload-user")
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=user)
    draft = OutgoingMessage.objects.create(mailbox=box, author=user, subject="Befund", to=[], state="draft")
    logged_in = _login(edge, "upload-user", "pw-secret-123")
    assert logged_in.status == 302, logged_in.body[:500]
    cookies = logged_in.cookies()
    csrf = cookies["csrftoken"]
    headers = {"Cookie": f"sessionid={cookies['sessionid']}; csrftoken={csrf}", "X-CSRFToken": csrf}
    headers["Origin"] = edge.origin

    content = os.urandom(6 * 2**20)
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="Befund.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    upload = edge.request(
        f"/entwurf/{draft.pk}/anhang/",
        method="POST",
        body=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert upload.status == 302, upload.body[:300]
    (attachment,) = draft.attachments.all()
    assert attachment.filename == "Befund.pdf" and attachment.size == len(content)

    # The same body to the draft's form is refused at the edge.
    refused = edge.request(
        f"/entwurf/{draft.pk}/",
        method="POST",
        body=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert refused.status == 413
