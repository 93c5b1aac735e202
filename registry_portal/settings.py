"""Settings for Registry Portal.

With no environment at all the portal runs on one machine: SQLite and a
file-system Celery broker under PORTAL_DATA_DIR (default: `.var/` beside
manage.py). DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis, which is
what several workers on several machines need.
"""
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PORTAL_DATA_DIR", BASE_DIR / ".var")).resolve()
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
except OSError as e:
    raise SystemExit(f"ERROR: PORTAL_DATA_DIR: cannot create the data directory {DATA_DIR}: {e.strerror}")


def _env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _secret_key():
    """The signing key for sessions: from the environment, or created once in
    the data directory with owner-only permissions (never in the repository)."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "connected",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "registry_portal.urls"
WSGI_APPLICATION = "registry_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "portal.sqlite3",
            # web, worker and beat share the file: WAL lets readers run beside
            # one writer, IMMEDIATE takes the write lock up front (no upgrade
            # deadlocks), and the timeout waits for it instead of failing.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # Tests use a file too (not shared-cache memory, whose table locks
            # fail at once instead of waiting): threads and processes of a
            # test see one database. One file per test process.
            "TEST": {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing one before collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Celery -----------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
else:
    # A broker that needs no server: messages are files in the data directory,
    # shared by the web process, the worker and beat on this machine.
    _broker_dir = DATA_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
# Django's cache holds short-lived counters (the token service's failed
# attempts): Redis when there is one, shared by every process; else memory.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}} \
    if REDIS_URL else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Runs are recorded in the database; task results are not needed.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# --- The product's knobs ----------------------------------------------------
PORTAL = {
    # How often beat looks for connected registries that are due a sync.
    "DISPATCH_INTERVAL_SECONDS": float(os.environ.get("PORTAL_DISPATCH_INTERVAL", "15")),
    # Continuous mode: the full comparison runs at least this often.
    "CONTINUOUS_SYNC_INTERVAL_SECONDS": float(os.environ.get("PORTAL_CONTINUOUS_INTERVAL", "30")),
    # With registry events wired (sync messages), the full comparison that
    # catches anything a lost event missed runs this often instead.
    "FULL_COMPARISON_INTERVAL_SECONDS": float(os.environ.get("PORTAL_FULL_COMPARISON_INTERVAL", "600")),
    # A sync holds its connected registry's lock for this long and renews it
    # while it works; a lock of a dead worker expires after it.
    "SYNC_LOCK_TTL_SECONDS": float(os.environ.get("PORTAL_SYNC_LOCK_TTL", "120")),
    # Blobs copied at once within one run.
    "SYNC_PARALLEL_BLOBS": int(os.environ.get("PORTAL_SYNC_PARALLEL_BLOBS", "4")),
    # The health check probes every connected registry this often.
    "HEALTH_CHECK_INTERVAL_SECONDS": float(os.environ.get("PORTAL_HEALTH_CHECK_INTERVAL", "30")),
    # A connected registry whose syncs have not succeeded for this long is "behind its parent".
    "BEHIND_AFTER_SECONDS": float(os.environ.get("PORTAL_BEHIND_AFTER", "3600")),
    # Runs older than this are pruned, except each connected registry's last ones.
    "RUN_RETENTION_DAYS": float(os.environ.get("PORTAL_RUN_RETENTION_DAYS", "30")),
    "RUNS_KEPT_PER_REGISTRY": int(os.environ.get("PORTAL_RUNS_KEPT", "50")),
    "MAX_CONNECTED_REGISTRIES": int(os.environ.get("PORTAL_MAX_CONNECTED_REGISTRIES", "50")),
    "REGISTRY_TIMEOUT_SECONDS": float(os.environ.get("PORTAL_REGISTRY_TIMEOUT", "30")),
    # --- the token service (connected.tokenservice) ---
    # The portal's address as registries and their clients reach it: the
    # realm of every `auth: token` block is PUBLIC_URL + /token/.
    "PUBLIC_URL": os.environ.get("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/"),
    # The `iss` of every token, and the `issuer` registries are configured with.
    "TOKEN_ISSUER": os.environ.get("PORTAL_TOKEN_ISSUER", "registry-portal"),
    "TOKEN_LIFETIME_SECONDS": int(os.environ.get("PORTAL_TOKEN_LIFETIME", "300")),
    # The signing key and its certificate (created on first use, mode 600)
    # and the key that encrypts the worker's copy of sync-token passwords.
    "TOKEN_SERVICE_DIR": os.environ.get("PORTAL_TOKEN_SERVICE_DIR", str(DATA_DIR / "token-service")),
    # Per token: after this many failed logins within the window, further
    # attempts are answered 429 until the window ends.
    "TOKEN_FAILURE_LIMIT": int(os.environ.get("PORTAL_TOKEN_FAILURE_LIMIT", "5")),
    "TOKEN_FAILURE_WINDOW_SECONDS": float(os.environ.get("PORTAL_TOKEN_FAILURE_WINDOW", "60")),
    "MAX_CLIENT_TOKENS": int(os.environ.get("PORTAL_MAX_CLIENT_TOKENS", "50")),
    # Reverse proxies in front of the portal (their addresses): behind them the
    # client is the nearest X-Forwarded-For hop that is not one of them.
    "TRUSTED_PROXIES": frozenset(a.strip() for a in os.environ.get("PORTAL_TRUSTED_PROXIES", "").split(",")
                                 if a.strip()),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "connected": {"handlers": ["console"], "level": os.environ.get("PORTAL_LOG_LEVEL", "INFO")},
        # httpx logs every request URL at INFO; upload URLs carry state tokens.
        "httpx": {"level": "WARNING"},
    },
}
