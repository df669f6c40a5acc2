"""The simulator's long-running commands stop on a signal whichever of their threads the kernel hands it to.

Ctrl-C in the demo sends SIGINT to the process group and the demo script at once SIGTERM: a signal arriving while
another is pending goes to some other thread of the process. Python runs handlers only in the main thread, and a
main thread parked in an untimed ``Event.wait()`` is not woken by a signal that another thread received: the
process lived on and the demo's Ctrl-C waited for it forever. The tests send SIGTERM to a thread that is not the
main thread (tgkill), which is what happened there by chance."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tisim.support import REPO

SYS_TGKILL = 234  # x86_64; the test machines and CI are x86_64 Linux


def tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def stop_through_another_thread(args: list[str], banner: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the servers listen
        assert banner in first, proc.stderr.read() if proc.stderr else ""
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others, "the simulator serves in threads besides the main thread"
        tgkill(proc.pid, others[0], signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 10 s after SIGTERM (received by a thread other than the main thread)")
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_konnektor_run_stops_on_a_signal_to_another_thread(tmp_path: Path) -> None:
    data_dir = tmp_path / "tisim"
    stop_through_another_thread(["konnektor-run", "--data-dir", str(data_dir), "--port", "0"], "connector.sds")
    assert not (data_dir / "konnektor.json").exists()


def test_run_stops_on_a_signal_to_another_thread(tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(
        json.dumps(
            {"host": "127.0.0.1", "smtp_port": 0, "pop3_port": 0, "tls": False, "data_dir": "data", "accounts": []}
        )
    )
    stop_through_another_thread(["run", "--config", str(config)], "tisim CM: SMTP 127.0.0.1:")
    assert not (tmp_path / "data" / "cm.json").exists()
