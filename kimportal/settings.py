"""Settings for KIM Portal.

One module, driven by the environment (see .env.example). Without any configuration the
embedded default runs: SQLite and files under DATA_DIR, Celery over the filesystem
transport, the SQLite channel layer, and the TI simulator on loopback.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("KIMPORTAL_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

# The embedded default is whatever runs without DATABASE_URL: the demo and a laptop.
EMBEDDED = "DATABASE_URL" not in env


def _embedded_secret(name: str, generate) -> str:
    """A secret from the environment; in embedded mode generated once and kept in DATA_DIR.

    Production (DATABASE_URL set) must provide it: there is no default.
    """
    if name in env:
        return env.str(name)
    if not EMBEDDED:
        raise ImproperlyConfigured(f"{name} must be set when DATABASE_URL is set")
    path = DATA_DIR / f".{name.lower()}"
    if not path.exists():
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()


def _capacity(name: str, default: int | float, minimum: int | float = 1) -> Any:
    """A number of threads, sockets, connections or seconds that the process model needs to be at least `minimum`.

    A zero here does not fail loudly later: no request would ever get one of zero slots (every page waits forever),
    no socket one of zero places. So a value that is no number or too small stops the start with a message naming
    the variable, instead of a portal that hangs or a traceback about int()."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    kind = "a whole number" if isinstance(default, int) else "a number"
    try:
        value = type(default)(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}") from None
    if not math.isfinite(value):  # "nan" would compare as never too late, "inf" as never
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


SECRET_KEY = _embedded_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))
# Fernet keys, comma separated; the first encrypts, all decrypt (key rotation).
KIMPORTAL_CREDENTIALS_KEYS = _embedded_secret("KIMPORTAL_CREDENTIALS_KEYS", _fernet_key).split(",")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_htmx",
    "template_partials",
    "csp",
    "channels",
    "audit",
    "mailbox",
    "directory",
    "signing",
    "operations",
]
if EMBEDDED:
    INSTALLED_APPS.append("channels_lite")

MIDDLEWARE = [
    # First: every answer is counted and timed for /metrics, the other middleware's included.
    "kimportal.requestmetrics.RequestMetricsMiddleware",
    # A view that cannot reach the database answers 503 (kimportal.unavailable; a middleware's read: handler500).
    "kimportal.unavailable.DatabaseUnavailableMiddleware",
    "kimportal.middleware.ConcurrencyLimitMiddleware",
    "kimportal.requestscope.RequestScopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "kimportal.middleware.PortalLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "kimportal.middleware.PortalAuthenticationMiddleware",
    "mailbox.middleware.IdleLogoutMiddleware",
    "kimportal.middleware.PortalLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "kimportal.middleware.PrivatePagesMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the login page with the lockout message.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "kimportal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "mailbox.context_processors.portal",
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "kimportal.asgi.application"

DATABASES: dict[str, dict[str, Any]]
if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "kimportal.sqlite3",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000;",
                "transaction_mode": "IMMEDIATE",
            },
        },
        # The channel layer gets its own file so websocket traffic never contends with mail ingest.
        "channels": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "channels.sqlite3",
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;"},
        },
    }
    DATABASE_ROUTERS = ["kimportal.dbrouter.EmbeddedRouter"]
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_lite.layers.core.SQLiteChannelLayer",
            "CONFIG": {"database": "channels"},
        }
    }
else:
    DATABASES = {"default": env.db("DATABASE_URL")}
    # Under ASGI persistent connections are not safe (Django docs); a psycopg pool reuses them instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Short OLTP queries: PostgreSQL's JIT compiles for hundreds of ms and wins nothing here, and
        # on SSD storage index probes are nearly as cheap as sequential reads (the planner's default
        # of 4 makes it hash 50,000 read markers instead of probing 2,000).
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
            "options", env.str("KIMPORTAL_PG_OPTIONS", default="-c jit=off -c random_page_cost=1.1")
        )
        # A connect to a server that does not answer (a failover whose old address drops packets) gives up after this
        # many seconds, not libpq's default of minutes: the pool then tries again and answers 503 meanwhile
        # (kimportal.pgpool). A refused connect fails at once anyway.
        connect_timeout = env.int("KIMPORTAL_PG_CONNECT_TIMEOUT", default=5)
        DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", connect_timeout)
        if env.bool("KIMPORTAL_PG_PREPARED", default=True):
            # Server-side binding, and a statement run twice on a connection is prepared there: PostgreSQL
            # parses and plans each hot query once per pooled connection instead of once per call (under
            # load its CPU per request fell by 40 %). Off for a pooler that cannot keep prepared statements
            # (PgBouncer in transaction mode before 1.21).
            DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
            DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env.int("KIMPORTAL_PG_PREPARE_THRESHOLD", default=2)
        if env.bool("KIMPORTAL_PG_POOL", default=True):
            DATABASES["default"]["OPTIONS"]["pool"] = {
                "min_size": 1,
                # Every thread that touches the ORM holds one connection while it works (asgiref's
                # executor, Celery thread pools, the claim race test's 20 threads).
                "max_size": _capacity("KIMPORTAL_PG_POOL_SIZE", 32),
                "timeout": 10,
            }
            # After a PostgreSQL restart or failover every idle pooled connection is dead, and each would fail
            # one request (up to KIMPORTAL_PG_POOL_SIZE per process). With health checks each checkout runs an
            # empty query first, and a dead connection is replaced instead of handed out; the first failed check
            # tests all idle connections at once (kimportal.pgpool: psycopg alone waits 0, 1, 2, 4 s between
            # failed checks, and timed out a checkout on a pool of more than about five idle connections).
            # Cost: one round trip per checkout, measured 25 → 195 µs over local TCP.
            DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("KIMPORTAL_PG_POOL_CHECK", default=True)
            DATABASES["default"]["ENGINE"] = "kimportal.pgpool"
    DATABASES["default"].setdefault("TEST", {"NAME": env.str("TEST_DATABASE_NAME", default="test_kimportal")})

REDIS_URL = env.str("REDIS_URL", default="")


def live_prefix(redis_url: str) -> str:
    """The live events' channel names of the portal on this Redis database. Redis keeps keys per database number,
    but Pub/Sub channels are one namespace for the whole server: two portals on one Redis server (production and a
    test system, each with its own database number) would otherwise hear each other's events."""
    from redis.connection import parse_url

    return f"kimportal.{parse_url(redis_url).get('db', 0)}."


if REDIS_URL:
    # A socket whose events wait longer than KIMPORTAL_LIVE_LAG_LIMIT, or more than `capacity` of them, is closed
    # and resyncs (mailbox.consumers.base).
    CHANNEL_LAYERS = {
        "default": {
            # Redis Pub/Sub: one message per event and server process, handed to its sockets in-process
            # (kimportal.channel_layer); a socket holds at most `capacity` undelivered events, then resyncs.
            "BACKEND": "kimportal.channel_layer.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "capacity": 1000,
                "prefix": live_prefix(REDIS_URL),
            },
        }
    }
elif not EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "mailbox:inbox"
LOGOUT_REDIRECT_URL = "login"

# --- Sign-in on shared ward PCs ---
# A session lasts at most one shift, however active; and ends after KIMPORTAL_IDLE_LOGOUT_MINUTES without input
# (0: never), enforced on the server (mailbox.middleware) with a warning in the page a minute before.
SESSION_COOKIE_AGE = int(env.float("KIMPORTAL_SESSION_HOURS", default=12.0) * 3600)
KIMPORTAL_IDLE_LOGOUT_MINUTES = env.float("KIMPORTAL_IDLE_LOGOUT_MINUTES", default=30.0)
# Throttling and lockout (django-axes): after this many failed sign-ins an account is locked, and so is the
# address they came from (a ward PC trying many accounts), each on its own; a manager unlocks under
# /leitung/anmeldesperren/, or the lock ends KIMPORTAL_SIGNIN_COOLOFF_MINUTES after the last failure (0: only a
# manager unlocks). The address is REMOTE_ADDR: behind nginx the ASGI server has already put the browser's
# address there from X-Forwarded-For, trusted only from KIMPORTAL_FORWARDED_ALLOW_IPS (deploy/gunicorn.conf.py).
AXES_FAILURE_LIMIT = env.int("KIMPORTAL_SIGNIN_FAILURE_LIMIT", default=10)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
_signin_cooloff = env.float("KIMPORTAL_SIGNIN_COOLOFF_MINUTES", default=15.0)
AXES_COOLOFF_TIME = timedelta(minutes=_signin_cooloff) if _signin_cooloff > 0 else None
# Tries refused during a lock do not restart its cool-off (axes' default did): a try every 14 minutes, from anywhere,
# kept an account locked for as long as someone kept trying. The lock ends the cool-off after its last counted failure.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "mailbox.signin.client_address"
AXES_USERNAME_CALLABLE = "mailbox.signin.username_for_lockout"
AXES_LOCKOUT_CALLABLE = "mailbox.views.signin.lockout_response"
# A sign-in the directory could not check (it was down) is not counted: an outage must not lock out everyone who
# kept trying, nor their ward PC's address. A local account's wrong password counts as always.
AXES_WHITELIST_CALLABLE = "mailbox.signin.directory_could_not_check"
# A successful sign-in clears that account's failures from that address (mailbox.signin), not the address's
# failures for other accounts: one colleague signing in must not reset a guesser's count on the same PC.
AXES_RESET_ON_SUCCESS = False
# Successful sign-ins and logouts are in the audit trail; axes keeps only the failure counters.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False

AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend"]
# Optional sign-in against the hospital's directory (OpenLDAP or Active Directory, django-auth-ldap). Local
# accounts (the IT admin) keep working after it: the model backend is asked when the directory says no or is down.
KIMPORTAL_AUTH_LDAP_URL = env.str("KIMPORTAL_AUTH_LDAP_URL", default="")
if KIMPORTAL_AUTH_LDAP_URL:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch, NestedActiveDirectoryGroupType

    AUTHENTICATION_BACKENDS.append("mailbox.ldapauth.PortalLDAPBackend")
    AUTH_LDAP_SERVER_URI = KIMPORTAL_AUTH_LDAP_URL
    AUTH_LDAP_BIND_DN = env.str("KIMPORTAL_AUTH_LDAP_BIND_DN", default="")
    AUTH_LDAP_BIND_PASSWORD = env.str("KIMPORTAL_AUTH_LDAP_BIND_PASSWORD", default="")
    # %(user)s is escaped by django-auth-ldap before it goes into the filter. AD: (sAMAccountName=%(user)s).
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        env.str("KIMPORTAL_AUTH_LDAP_USER_BASE"),
        ldap.SCOPE_SUBTREE,
        env.str("KIMPORTAL_AUTH_LDAP_USER_FILTER", default="(uid=%(user)s)"),
    )
    _ldap_ad = env.str("KIMPORTAL_AUTH_LDAP_GROUP_TYPE", default="groupOfNames") == "activeDirectory"
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        env.str("KIMPORTAL_AUTH_LDAP_GROUP_BASE", default=env.str("KIMPORTAL_AUTH_LDAP_USER_BASE")),
        ldap.SCOPE_SUBTREE,
        "(objectClass=group)" if _ldap_ad else "(objectClass=groupOfNames)",
    )
    AUTH_LDAP_GROUP_TYPE = NestedActiveDirectoryGroupType() if _ldap_ad else GroupOfNamesType()
    # Only members of this group may sign in through the directory (empty: everyone the search finds).
    AUTH_LDAP_REQUIRE_GROUP = env.str("KIMPORTAL_AUTH_LDAP_REQUIRE_GROUP", default="") or None
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_START_TLS = env.bool("KIMPORTAL_AUTH_LDAP_START_TLS", default=False)
    # A directory that does not answer must not hold the login page: the local accounts are tried next.
    AUTH_LDAP_CONNECTION_OPTIONS: dict[int, Any] = {ldap.OPT_NETWORK_TIMEOUT: 5, ldap.OPT_TIMEOUT: 10}
    if env.str("KIMPORTAL_AUTH_LDAP_CA_FILE", default=""):
        AUTH_LDAP_CONNECTION_OPTIONS[ldap.OPT_X_TLS_CACERTFILE] = env.str("KIMPORTAL_AUTH_LDAP_CA_FILE")
        AUTH_LDAP_CONNECTION_OPTIONS[ldap.OPT_X_TLS_NEWCTX] = 0
# Directory groups -> portal groups (wards), as JSON {"<group DN>": "<ward>"}: at each directory sign-in the user
# joins the mapped wards of their groups and leaves the mapped wards of groups they left; other groups stay.
KIMPORTAL_AUTH_LDAP_GROUP_MAP: dict[str, str] = env.json("KIMPORTAL_AUTH_LDAP_GROUP_MAP", default={})
AUTHENTICATION_BACKENDS.append("django.contrib.auth.backends.ModelBackend")

LANGUAGE_CODE = "de"
LANGUAGES = [("de", _("Deutsch")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Berlin"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# Let the ASGI app serve /static itself (demo, browser tests); production uses a reverse proxy.
KIMPORTAL_SERVE_STATIC = env.bool("KIMPORTAL_SERVE_STATIC", default=EMBEDDED)

SESSION_COOKIE_HTTPONLY = True
# Django's database sessions, read with a query compiled once (every request and socket connect reads one).
SESSION_ENGINE = "kimportal.sessions"
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "SAMEORIGIN"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Django's default, named: the longest selection form (500 drafts to sign or approve) fits with room to spare; a
# hand-made post with more fields is refused unparsed, with a page that says why (kimportal.errorpages).
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# Content Security Policy: scripts only from us, with nonces; no inline handlers, no eval.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        # 'self' covers same-origin ws:/wss: (CSP Level 3); no socket to any other host.
        "connect-src": ["'self'"],
        "frame-src": ["'self'"],
        "frame-ancestors": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Celery: Redis when REDIS_URL is set, otherwise the filesystem transport (no extra service).
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    _queue_dir = DATA_DIR / "celery-queue"
    _queue_dir.mkdir(exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_queue_dir),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env.str("KIMPORTAL_CELERY_QUEUE", default="celery")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# How often beat asks which accounts are due; each account has its own poll interval.
KIMPORTAL_FETCH_TICK_SECONDS = env.float("KIMPORTAL_FETCH_TICK_SECONDS", default=5.0)
# A fetch holds a lease on its account, renewed after every message; a killed worker's lease expires.
KIMPORTAL_FETCH_LEASE_SECONDS = _capacity("KIMPORTAL_FETCH_LEASE_SECONDS", 120)

# Read-lock (claim) on a message: lease length, renewed by the open page's heartbeat.
# The read-lock is a short lease renewed by the open page's heartbeat (every 20 s): whatever kills a page,
# a socket or a server, the lock frees itself within about a minute.
KIMPORTAL_CLAIM_SECONDS = _capacity("KIMPORTAL_CLAIM_SECONDS", 60)
# Working hours the mailboxes' SLA clocks count (ISO weekdays, 1 = Monday; local time). No weekdays:
# every hour counts. Public holidays are not known to the portal and count as working days.
KIMPORTAL_SLA_WORKDAYS = env.list("KIMPORTAL_SLA_WORKDAYS", cast=int, default=[1, 2, 3, 4, 5])
KIMPORTAL_SLA_WORKDAY_HOURS = env.str("KIMPORTAL_SLA_WORKDAY_HOURS", default="07:00-17:00")
# Requests that run Django at the same time per ASGI process (the others wait their turn, cheaply). A request spends
# part of its time waiting for PostgreSQL: with 4, a worker under load queued requests while its CPU idled (users
# clicking every 1-3 s, bench/load.py: docs/deploy.md); far more (32) starves the event loop, and websockets are no
# longer accepted in time.
KIMPORTAL_WEB_CONCURRENCY = _capacity("KIMPORTAL_WEB_CONCURRENCY", 8)
# Database work of websocket consumers runs on this many threads per ASGI process.
KIMPORTAL_SOCKET_DB_THREADS = _capacity("KIMPORTAL_SOCKET_DB_THREADS", 8)
# Per-user counts follow live events after this pause, so a burst of events costs one refresh.
KIMPORTAL_LIVE_COUNTS_DELAY = env.float("KIMPORTAL_LIVE_COUNTS_DELAY", default=0.5)
# List rows wait this long before they are sent, so a burst of events becomes one check and one frame.
KIMPORTAL_LIVE_ROWS_DELAY = env.float("KIMPORTAL_LIVE_ROWS_DELAY", default=0.05)
# A socket receiving events this many seconds after they were sent has fallen behind: it is closed and
# the page reconnects and reloads what it shows (never silently stale).
KIMPORTAL_LIVE_LAG_LIMIT = _capacity("KIMPORTAL_LIVE_LAG_LIMIT", 15.0)
# Websockets one session may hold open per ASGI process (one or two per open page); more are refused (4429).
KIMPORTAL_MAX_SOCKETS_PER_SESSION = _capacity("KIMPORTAL_MAX_SOCKETS_PER_SESSION", 100)
# Websockets one ASGI worker holds open; more are refused with 1013 and the browser reconnects after a pause. A worker
# (one per core) serves 100-150 users (docs/deploy.md), one or two sockets per open page and a few tabs each.
KIMPORTAL_MAX_SOCKETS_PER_WORKER = _capacity("KIMPORTAL_MAX_SOCKETS_PER_WORKER", 1000)

# Mail storage: content-addressed raw messages and attachments.
KIMPORTAL_BLOB_DIR = Path(env.str("KIMPORTAL_BLOB_DIR", default=str(DATA_DIR / "blobs")))
# Sent on every outgoing mail as X-KIM-Sendersystem.
KIMPORTAL_SENDER_SYSTEM = "KIM-Portal;0.1.0"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# --- Directory (VZD) ---
# LDAP(S) URL of the VZD: the Konnektor's LDAP proxy in production, tisim's slapd in the demo
# (`python -m tisim vzd-serve --port 8389`). Anonymous bind. For ldaps:// the Konnektor's certificate names its
# card, not its host: trust it through KIMPORTAL_VZD_CA_FILE (its component CA) or KIMPORTAL_VZD_TLS_PIN (SHA-256
# of its certificate, any notation), neither checks the host name. Without both: system CAs and host name.
KIMPORTAL_VZD_URL = env.str("KIMPORTAL_VZD_URL", default="ldap://127.0.0.1:8389")
KIMPORTAL_VZD_BASE_DN = env.str("KIMPORTAL_VZD_BASE_DN", default="dc=data,dc=vzd")
KIMPORTAL_VZD_CONNECT_TIMEOUT = env.float("KIMPORTAL_VZD_CONNECT_TIMEOUT", default=5.0)
KIMPORTAL_VZD_SEARCH_TIMEOUT = env.float("KIMPORTAL_VZD_SEARCH_TIMEOUT", default=5.0)
# After a network timeout the directory is not asked for this long: searches fail at once, holding no request thread.
KIMPORTAL_VZD_RETRY_PAUSE = env.float("KIMPORTAL_VZD_RETRY_PAUSE", default=15.0)
KIMPORTAL_VZD_CA_FILE = env.str("KIMPORTAL_VZD_CA_FILE", default="")
KIMPORTAL_VZD_POOL_SIZE = env.int("KIMPORTAL_VZD_POOL_SIZE", default=4)
KIMPORTAL_VZD_TLS_PIN = env.str("KIMPORTAL_VZD_TLS_PIN", default="")
# The client-system certificate the Konnektor demands when client authentication is on (PEM files; convert the
# admin UI's PKCS#12 with openssl). The key file may be encrypted: its password comes from the environment only.
KIMPORTAL_VZD_CLIENT_CERT_FILE = env.str("KIMPORTAL_VZD_CLIENT_CERT_FILE", default="")
KIMPORTAL_VZD_CLIENT_KEY_FILE = env.str("KIMPORTAL_VZD_CLIENT_KEY_FILE", default="")
KIMPORTAL_VZD_CLIENT_KEY_PASSWORD = env.str("KIMPORTAL_VZD_CLIENT_KEY_PASSWORD", default="")
# Results shown per page (ranked from the at most 100 the VZD returns); certificates are checked for these.
KIMPORTAL_VZD_PAGE_SIZE = env.int("KIMPORTAL_VZD_PAGE_SIZE", default=20)
# Certificate states of shown entries are cached per (uid, changeDateTime) for this long (KOM-LE-A_2026 allows it).
KIMPORTAL_VZD_CERT_CACHE_SECONDS = env.float("KIMPORTAL_VZD_CERT_CACHE_SECONDS", default=600.0)

# --- Signing (QES with the eHBA through the Konnektor) ---
# The Konnektor: its base URL (connector.sds is read from there), connection mode "plain" (Ungesichert),
# "basic" (TLS + Basic auth, "Login") or "cert" (TLS + client certificate, "Zertifikat", recommended). Files are
# PEM paths: the client certificate and key (mode cert), the CA that signed the Konnektor's TLS certificate, and the
# CA(s) of the eHBA QES certificates, the trust for checking signatures locally before they are used.
# The demo points to the simulator (`python -m tisim konnektor-run`).
KIMPORTAL_KONNEKTOR_URL = env.str("KIMPORTAL_KONNEKTOR_URL", default="http://127.0.0.1:8090")
KIMPORTAL_KONNEKTOR_MODE = env.str("KIMPORTAL_KONNEKTOR_MODE", default="plain")
KIMPORTAL_KONNEKTOR_USER = env.str("KIMPORTAL_KONNEKTOR_USER", default="")
KIMPORTAL_KONNEKTOR_PASSWORD = env.str("KIMPORTAL_KONNEKTOR_PASSWORD", default="")
KIMPORTAL_KONNEKTOR_CLIENT_CERT = env.str("KIMPORTAL_KONNEKTOR_CLIENT_CERT", default="")
KIMPORTAL_KONNEKTOR_CLIENT_KEY = env.str("KIMPORTAL_KONNEKTOR_CLIENT_KEY", default="")
KIMPORTAL_KONNEKTOR_CA = env.str("KIMPORTAL_KONNEKTOR_CA", default="")
KIMPORTAL_KONNEKTOR_QES_CA = env.str("KIMPORTAL_KONNEKTOR_QES_CA", default="")
KIMPORTAL_KONNEKTOR_MANDANT = env.str("KIMPORTAL_KONNEKTOR_MANDANT", default="Mandant1")
KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = env.str("KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM", default="KIMPortal")
# The WorkplaceId of VerifyDocument, the check of received signatures (no card, no PIN); empty: the first active
# workstation (docs/received-signatures.md).
KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE = env.str("KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE", default="")
# Seconds: ordinary calls, and SignDocument, which waits while the physician types the PIN.
KIMPORTAL_KONNEKTOR_TIMEOUT = env.float("KIMPORTAL_KONNEKTOR_TIMEOUT", default=30.0)
KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT = env.float("KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT", default=600.0)
# Documents per SignDocument call (every Konnektor takes at least 50; each call is one PIN entry) and bytes per call.
KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL = env.int("KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL", default=50)
KIMPORTAL_KONNEKTOR_MAX_CALL_BYTES = env.int("KIMPORTAL_KONNEKTOR_MAX_CALL_BYTES", default=250 * 2**20)

# --- KIM administration (operations: the provider's Account Manager, issue 14) ---
# The Account Manager's origin (https://<host>:<port> from the provider's DNS-SD records), the CA file (PEM) its TLS
# certificate is checked against (empty: the system CAs), seconds per call, the JWT's lifetime (300-21600 s, within
# the provider's jwtExpiration) and the SMC-B that signs it (its ICCSN; empty: the SMC-B the Konnektor shows in the
# mailbox's context). The demo points to the simulator (`python -m tisim run` writes accountmanager.json).
KIMPORTAL_ACCOUNT_MANAGER_URL = env.str("KIMPORTAL_ACCOUNT_MANAGER_URL", default="https://127.0.0.1:8444")
KIMPORTAL_ACCOUNT_MANAGER_CA = env.str("KIMPORTAL_ACCOUNT_MANAGER_CA", default="")
KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT = env.float("KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT", default=20.0)
KIMPORTAL_ACCOUNT_MANAGER_JWT_SECONDS = env.int("KIMPORTAL_ACCOUNT_MANAGER_JWT_SECONDS", default=300)
KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN = env.str("KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN", default="")
# --- Drafts from the KIS (signing/api, docs/kis-api.md) ---
# Calls per client system and minute (counted per process), and the callbacks: seconds before the first retry
# (doubling up to an hour), attempts before giving up, seconds per delivery.
KIMPORTAL_KIS_RATE_LIMIT_PER_MINUTE = env.int("KIMPORTAL_KIS_RATE_LIMIT_PER_MINUTE", default=600)
# A new API token's lifetime in days when the manager does not choose one (signing.api.tokens.LIFETIMES_DAYS), and how
# many days before the last valid token of a connection expires the operations page warns.
KIMPORTAL_KIS_TOKEN_DAYS = env.int("KIMPORTAL_KIS_TOKEN_DAYS", default=365)
KIMPORTAL_KIS_TOKEN_WARN_DAYS = env.int("KIMPORTAL_KIS_TOKEN_WARN_DAYS", default=30)
KIMPORTAL_KIS_CALLBACK_RETRY_SECONDS = env.float("KIMPORTAL_KIS_CALLBACK_RETRY_SECONDS", default=30.0)
KIMPORTAL_KIS_CALLBACK_MAX_ATTEMPTS = env.int("KIMPORTAL_KIS_CALLBACK_MAX_ATTEMPTS", default=10)
KIMPORTAL_KIS_CALLBACK_TIMEOUT = env.float("KIMPORTAL_KIS_CALLBACK_TIMEOUT", default=10.0)
# Callbacks to the portal's own host (127.0.0.0/8, ::1: its Redis, PostgreSQL, admin ports): only for a one-host demo.
KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK = env.bool("KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK", default=False)
# A draft's document at most (the Konnektor signs up to 25 MB per document) and documents per batch.
KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = env.int("KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES", default=25 * 2**20)
KIMPORTAL_SIGNING_MAX_BATCH = env.int("KIMPORTAL_SIGNING_MAX_BATCH", default=250)
# Signed letters go to the outbox on their own (on) or wait there for someone to send them (off). Takes effect
# once the send path (outbox) exists; until then every signed letter waits ("signiert – wartet auf Versand").
KIMPORTAL_SIGNING_AUTO_SEND = env.bool("KIMPORTAL_SIGNING_AUTO_SEND", default=True)
# A running batch renews its heartbeat this often; one silent for six beats has lost its worker and is ended.
KIMPORTAL_SIGNING_HEARTBEAT_SECONDS = env.float("KIMPORTAL_SIGNING_HEARTBEAT_SECONDS", default=15.0)

# --- Sending (mailbox.services.compose / outbox) ---
# What every sent mail names in its mandatory headers (gematik's client-system rules): the product and version,
# the hospital's KIM support address, and the registered product id of this client system.
KIMPORTAL_KIM_SENDERSYSTEM = env.str("KIMPORTAL_KIM_SENDERSYSTEM", default="KIM-Portal;0.1.0")
KIMPORTAL_KIM_SUPPORT = env.str("KIMPORTAL_KIM_SUPPORT", default="kim-support@klinikum-demo.example")
KIMPORTAL_TI_USER_AGENT = env.str("KIMPORTAL_TI_USER_AGENT", default="KIMPortal-Klinikum/0.1.0")
# First retry after a temporary failure (doubling up to an hour); how long a delivering worker holds a message
# (0: from the SMTP timeout).
KIMPORTAL_SEND_RETRY_SECONDS = env.float("KIMPORTAL_SEND_RETRY_SECONDS", default=30.0)
KIMPORTAL_SEND_LEASE_SECONDS = env.float("KIMPORTAL_SEND_LEASE_SECONDS", default=0.0)

# --- Operations page, /health/ and /metrics (operations, docs/operations.md) ---
# Check results are kept this long (seconds): however many monitors ask, the TI sees one round per period.
KIMPORTAL_HEALTH_CACHE_SECONDS = env.float("KIMPORTAL_HEALTH_CACHE_SECONDS", default=20.0)
# Seconds each probe (POP3 login, Konnektor call, directory search) may take.
KIMPORTAL_HEALTH_TIMEOUT = env.float("KIMPORTAL_HEALTH_TIMEOUT", default=4.0)
# Two clocks of the installation further apart than this are a warning on the operations page: the live lists'
# replay margin (operations.services.clock).
KIMPORTAL_CLOCK_SKEW_LIMIT = env.float("KIMPORTAL_CLOCK_SKEW_LIMIT", default=0.2)
# Certificates (SMC-B, eHBA, the Clientmodul's TLS certificate) turn yellow this many days before they end.
KIMPORTAL_CERT_WARN_DAYS = env.int("KIMPORTAL_CERT_WARN_DAYS", default=30)
# Beat queues a heartbeat this often; a worker runs it. Stamps older than 3 beats (at least 45 s) are red.
KIMPORTAL_HEARTBEAT_SECONDS = env.float("KIMPORTAL_HEARTBEAT_SECONDS", default=15.0)
# /metrics (Prometheus): a bearer token, and/or client addresses or networks allowed without one (comma-separated,
# e.g. "10.1.2.30,10.9.0.0/24"). Neither set: /metrics answers 403 to everyone.
KIMPORTAL_METRICS_TOKEN = env.str("KIMPORTAL_METRICS_TOKEN", default="")
KIMPORTAL_METRICS_ALLOW = env.list("KIMPORTAL_METRICS_ALLOW", default=[])
