from __future__ import annotations

import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the TI simulator (same as 'python -m tisim ...'). It runs as its own process: the portal never imports it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("args", nargs="*", help="arguments for python -m tisim (default: run)")

    def run_from_argv(self, argv: list[str]) -> None:
        # Pass everything through untouched, including options Django does not know.
        args = argv[2:] or ["run", "--data-dir", str(settings.DATA_DIR / "tisim")]
        raise SystemExit(subprocess.call([sys.executable, "-m", "tisim", *args], cwd=settings.BASE_DIR))

    def handle(self, *args, **options) -> None:  # pragma: no cover - run_from_argv does the work
        pass
