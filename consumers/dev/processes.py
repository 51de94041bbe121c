"""Child processes that never outlive Herald, and stop signals handled like Ctrl-C.

Children start in a session of their own (`start_new_session=True`), so a Ctrl-C in the terminal reaches only the
parent, which stops them in order. The price: nothing stops them when the parent dies. Two things close that gap:

- `stop_on_signals()` turns SIGTERM, SIGINT and SIGHUP into a `Stopped` exception in the main thread, so the
  `finally` blocks that stop the children run whatever the signal (Docker, systemd, Kubernetes and `timeout` send
  SIGTERM; a closed terminal sends SIGHUP).
- `die_with_parent()` is a `preexec_fn` that asks Linux to SIGTERM the child when its parent dies, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal. A KeyboardInterrupt, so code that already handles Ctrl-C
    (and asyncio, which lets KeyboardInterrupt through its tasks and callbacks) treats every signal alike."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stopping = False  # a stop is under way: further signals must not cut it short


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if _stopping:
        return  # a second Ctrl-C, or SIGHUP after SIGTERM: the stop already in progress is what was asked for
    _stopping = True
    raise Stopped(signum)


def begin_stop() -> None:
    """Mark the start of a stop that began without a signal: a signal from now on is ignored, not raised, so it
    cannot interrupt the stopping of the children half-way."""
    global _stopping
    _stopping = True


@contextlib.contextmanager
def stop_on_signals(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """While inside, the first of `signals` raises `Stopped` in the main thread; later ones are ignored.

    A signal that is ignored on entry stays ignored: `nohup` ignores SIGHUP, and a shell starts background jobs with
    SIGINT ignored, on purpose. Outside the main thread (where handlers cannot be installed) this does nothing.
    """
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stopping = False
    previous: dict[int, Any] = {}
    for signum in signals:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _raise_stopped)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stopping = False


@functools.cache
def _prctl() -> Callable[..., int] | None:
    # Resolved in the parent: the forked child should do as little as possible before exec.
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent(signum: int = signal.SIGTERM, *, parent_pid: int | None = None) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `signum` when this process dies (Linux; None elsewhere).

    The setting survives exec, so it works for binaries we do not control (Tansu). Linux sends the signal when the
    *thread* that forked the child exits, so this returns None outside the main thread: a child started from a pool
    thread would otherwise be killed whenever that thread ends. `parent_pid` is for tests.
    """
    prctl = _prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    expected = os.getpid() if parent_pid is None else parent_pid

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever send the signal. Orphans are
        # adopted by init (or a subreaper), which changes the parent pid.
        if os.getppid() != expected:
            os._exit(1)

    return preexec


def start_child(args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` in a session of its own (Ctrl-C goes to us only) that dies with this process."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=die_with_parent(), **popen)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10, kill_timeout: float = 5) -> int | None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the exit code (None if even SIGKILL did not end
    it within `kill_timeout`, e.g. a process stuck in the kernel)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(kill_timeout)
    return process.returncode
