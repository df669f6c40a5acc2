"""tisim stands apart from the portal: no Django, and never aiosmtpd.handlers (it imports `mailbox`,
which in this repository is the portal's app, not the standard library)."""

from __future__ import annotations

import subprocess
import sys

from tests.tisim.support import REPO

PROBE = """
import sys, tempfile
from pathlib import Path
import tisim.__main__, tisim.cm, tisim.cm.send
from tisim.cm import CMSimulator
sim = CMSimulator(Path(tempfile.mkdtemp()), accounts={"a@b.kim.telematik": "pw"})
sim.start()
sim.stop()
watched = ("aiosmtpd.handlers", "aiosmtpd.smtp", "django", "mailbox", "kimportal")
print(",".join(sorted(m for m in watched if m in sys.modules)))
"""


def test_tisim_imports_neither_aiosmtpd_handlers_nor_the_portal() -> None:
    # Run from the repository root, where `import mailbox` would find the portal's app.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "aiosmtpd.smtp"
