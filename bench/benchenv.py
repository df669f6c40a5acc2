"""The environment a bench runs Django in: its own database and data folder, whatever the shell has.

Call before importing anything that needs Django (models, services): it sets the variables and runs django.setup().
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_CREDENTIALS_KEY = "Wd0pM6hF7h4aWv8d5u3VbQ0bq2m0o9xJbnS0kz9m3dE="  # a fixed test key: benches hold no secrets


def django_for_bench(*, database: str, database_env: str, data_dir: str) -> None:
    """DATABASE_URL is the bench's own (`database_env` overrides it); the rest only where the shell sets nothing."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")
    # Its own database: rounds delete and re-add thousands of rows.
    os.environ["DATABASE_URL"] = os.environ.get(database_env, f"postgres://postgres@127.0.0.1:5432/{database}")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("KIMPORTAL_CREDENTIALS_KEYS", BENCH_CREDENTIALS_KEY)
    os.environ.setdefault("KIMPORTAL_DATA_DIR", str(ROOT / "var" / data_dir))
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()


def machine() -> str:
    """The machine a figure was measured on, comparable across machines: architecture, CPU model, cores, Python, and
    the time a fixed piece of pure Python takes on one core (the best of five; machines of the same kind differ by up
    to two times in it, and a server's requests per second follow it)."""
    import platform
    import time

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass

    def reference() -> float:
        start = time.perf_counter()
        table: dict[str, int] = {}
        for i in range(200_000):
            key = f"row-{i % 1000}"
            table[key] = table.get(key, 0) + len(key)
        return time.perf_counter() - start

    best_ms = min(reference() for _ in range(5)) * 1000
    return (
        f"{platform.machine()} {model or 'unknown CPU'}, {os.cpu_count()} CPUs, py{platform.python_version()}, "
        f"pure-Python reference {best_ms:.0f} ms"
    )
