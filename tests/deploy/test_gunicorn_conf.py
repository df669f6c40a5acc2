"""deploy/gunicorn.conf.py's worker hook: what a worker holds after loading the portal is frozen for the
garbage collector."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


def test_a_loaded_worker_freezes_its_objects_for_the_garbage_collector():
    conf = runpy.run_path(str(CONF))
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        conf["post_worker_init"](object())
        # The portal loaded in this test process: far more than a handful of objects are now permanent.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
