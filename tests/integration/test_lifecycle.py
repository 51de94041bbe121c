"""Issue 10: SIGTERM, SIGINT, SIGHUP or SIGKILL to `herald dev` / `herald broker` leaves no process and no port.

Children are found through /proc: Tansu by its binary and port in its command line, the simulator and the worker
(`python -m consumers …`, the same command line in every test) by this test's `HERALD_APP_ID` in their environment,
which every child of `herald dev` inherits. Startup gets generous waits (a busy 2-core machine); only the stop is
held to 10 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consumers.dev.broker import broker_binary, free_port, port_open
from consumers.dev.processes import Stopped, die_with_parent, start_child, stop_on_signals, stop_process
from tests.integration.harness import wait_until

pytestmark = pytest.mark.integration

STOP_BOUND = 10.0  # what the issue asks: every process gone and every port free within 10 s of the signal
STARTUP = 90.0


def _default_stop_signals() -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec: give the
    # command under test the dispositions a terminal would, whatever started pytest.
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def herald(*args: str, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """`herald <args>` in a session of its own (signals reach it only when sent to its pid)."""
    with open(out, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "consumers", *args], env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_stop_signals)


def _alive(pid: int) -> bool:
    """Running, not a zombie: an orphan that exited stays a zombie until init reaps it, and holds no port."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _proc_file(pid: str, name: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile, or not ours to read
        return []


def _pids() -> Iterator[str]:
    return (entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit())


def tansu_pids(port: int) -> list[int]:
    """Live Tansu processes listening on `port`."""
    binary, listener = broker_binary().encode(), f"tcp://127.0.0.1:{port}".encode()
    return [int(pid) for pid in _pids()
            if (args := _proc_file(pid, "cmdline")) and args[0] == binary and listener in args and _alive(int(pid))]


def marked_pids(app_id: str) -> list[int]:
    """Live processes with `HERALD_APP_ID=app_id` in their environment, other than this one."""
    marker = f"HERALD_APP_ID={app_id}".encode()
    return [int(pid) for pid in _pids()
            if int(pid) != os.getpid() and marker in _proc_file(pid, "environ") and _alive(int(pid))]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Dev:
    """One `herald dev` on ports of its own."""

    tmp: Path
    app_id: str
    ports: dict[str, int]
    pid: int = 0  # of `herald dev` itself, which has the marker too; its own exit is checked through Popen

    @classmethod
    def new(cls, tmp: Path) -> Dev:
        ports = {"kafka": free_port(), "smtp": free_port(), "web": free_port(), "admin": free_port(),
                 "sim": free_port()}
        return cls(tmp, f"herald-lc{uuid.uuid4().hex[:8]}", ports)

    @property
    def env(self) -> dict[str, str]:
        return {"HERALD_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.ports['kafka']}",
                "HERALD_SMTP_PORT": str(self.ports["smtp"]), "HERALD_WEB_PORT": str(self.ports["web"]),
                "HERALD_ADMIN_PORT": str(self.ports["admin"]),
                "HERALD_SIM_PORT": str(self.ports["sim"]), "HERALD_DATA_DIR": str(self.tmp),
                "HERALD_TOPIC_PREFIX": f"{self.app_id}.", "HERALD_APP_ID": self.app_id, "COLUMNS": "200"}

    @property
    def out(self) -> Path:
        return self.tmp / "dev.out"

    def output(self) -> str:
        logs = [self.out, *(self.tmp / name for name in ("broker.log", "sim.log", "worker.log"))]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())

    def open_ports(self) -> list[str]:
        return [name for name, port in self.ports.items() if port_open("127.0.0.1", port)]

    def leftovers(self) -> list[int]:
        """Live processes started by `herald dev`."""
        return sorted((set(marked_pids(self.app_id)) | set(tansu_pids(self.ports["kafka"]))) - {self.pid})


def _wait_up(process: subprocess.Popen[bytes], ready: str, out: Path, describe: Callable[[], str]) -> None:
    """Until `ready` shows in the output; fails with `describe()` (the logs) if the process exits first."""
    def up() -> bool:
        assert process.poll() is None, f"exited with {process.returncode} while starting:\n{describe()}"
        return ready in out.read_text(errors="replace")

    assert wait_until(up, STARTUP, 0.25), f"not up within {STARTUP:.0f} s:\n{describe()}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_lifecycle__herald_broker_stops_tansu_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    out = tmp_path / "broker.out"
    broker = herald("broker", "--port", str(port), env={"HERALD_TOPIC_PREFIX": f"lc{uuid.uuid4().hex[:6]}."},
                    out=out)
    try:
        _wait_up(broker, "topics created", out, lambda: out.read_text(errors="replace"))
        assert len(tansu_pids(port)) == 1  # the way this test finds Tansu works
        asked = time.monotonic()
        broker.send_signal(signum)
        stopped = wait_until(lambda: broker.poll() is not None and not tansu_pids(port)
                             and not port_open("127.0.0.1", port), STOP_BOUND)
        took = time.monotonic() - asked
        print(f"{signum.name} to herald broker: stopped in {took:.1f} s, exit code {broker.returncode}")
        assert stopped, f"after {STOP_BOUND:.0f} s: exit code {broker.poll()}, Tansu {tansu_pids(port)}, " \
                        f"port open {port_open('127.0.0.1', port)}"
        assert broker.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 0)
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait(10)
        kill_all(tansu_pids(port))


def stop_dev(tmp_path: Path, signum: signal.Signals, *, command: str = "dev", ready: str = "published",
             expected_children: int = 3) -> tuple[int | None, Dev]:
    """Start `herald <command>`, wait for `ready` in its output, send `signum`, assert that within 10 s it exited,
    every process it started is gone and every port is closed; return its exit code."""
    dev = Dev.new(tmp_path)
    process = herald(command, env=dev.env, out=dev.out)
    dev.pid = process.pid
    try:
        _wait_up(process, ready, dev.out, dev.output)
        children = dev.leftovers()
        assert len(children) >= expected_children, f"found only {children}"  # the way this test finds them works
        asked = time.monotonic()
        process.send_signal(signum)
        stopped = wait_until(lambda: process.poll() is not None and not dev.leftovers() and not dev.open_ports(),
                             STOP_BOUND)
        took = time.monotonic() - asked
        print(f"{signum.name} to herald {command} after {ready!r}: {len(children)} children, stopped in "
              f"{took:.1f} s, exit code {process.returncode}")
        assert stopped, (f"after {STOP_BOUND:.0f} s: exit code {process.poll()}, processes {dev.leftovers()}, "
                         f"open ports {dev.open_ports()}\n{dev.output()}")
        return process.returncode, dev
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        kill_all(dev.leftovers())


# SIGINT and SIGHUP take the same handler as SIGTERM: they run in `make test-slow`, keeping `make test` short.
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                    pytest.param(signal.SIGHUP, marks=pytest.mark.slow)], ids=lambda s: s.name)
def test_lifecycle__herald_dev_stops_everything_on_a_signal_and_exits_0(tmp_path: Path,
                                                                        signum: signal.Signals) -> None:
    code, dev = stop_dev(tmp_path, signum)
    assert code == 0, dev.output()
    assert "stopped." in dev.out.read_text()


def test_lifecycle__herald_dev_killed_its_children_exit_by_themselves(tmp_path: Path) -> None:
    # SIGKILL runs no handler: the kernel sends the children SIGTERM (PR_SET_PDEATHSIG); the SMTP sink is a thread.
    code, _ = stop_dev(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL


@pytest.mark.parametrize("ready", ["Tansu on", "provider simulator on"])
def test_lifecycle__herald_dev_stopped_while_starting_stops_what_it_started(tmp_path: Path, ready: str) -> None:
    # Whatever was started when the signal lands (the worker may be half-way up) is stopped, nothing else is waited
    # for.
    code, dev = stop_dev(tmp_path, signal.SIGTERM, ready=ready, expected_children=1 if ready == "Tansu on" else 2)
    assert code == 0, dev.output()


def test_lifecycle__herald_demo_stopped_by_sigterm_exits_143(tmp_path: Path) -> None:
    # The demo did not get to its verdict: 128 + SIGTERM, the shell's convention, rather than 0 or 1.
    code, dev = stop_dev(tmp_path, signal.SIGTERM, command="demo")
    assert code == 128 + signal.SIGTERM, dev.output()


def test_lifecycle__herald_sim_exits_on_sigterm(tmp_path: Path) -> None:
    # No children: the default action of SIGTERM (death) is enough, as long as the port is freed.
    port = free_port()
    sim = herald("sim", "--port", str(port), env={}, out=tmp_path / "sim.out")
    try:
        assert wait_until(lambda: port_open("127.0.0.1", port) or sim.poll() is not None, STARTUP, 0.25)
        assert sim.poll() is None, (tmp_path / "sim.out").read_text()
        sim.send_signal(signal.SIGTERM)
        assert wait_until(lambda: sim.poll() is not None and not port_open("127.0.0.1", port), STOP_BOUND)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(10)


def test_lifecycle__child_dies_with_its_killed_parent() -> None:
    # A middle process starts a sleeper through start_child, then is SIGKILLed: the sleeper gets SIGTERM.
    middle = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from consumers.dev.processes import start_child\n"
         "child = start_child([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE)
    child = 0
    try:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert _alive(child)
        middle.kill()
        middle.wait(10)
        assert wait_until(lambda: not _alive(child), 5)
    finally:
        middle.kill()
        middle.wait(10)
        if child:
            kill_all([child] if _alive(child) else [])


def test_lifecycle__child_whose_parent_died_before_prctl_exits_at_once(tmp_path: Path) -> None:
    # The race: the parent dies between fork and prctl. The child sees another parent pid and exits before exec.
    marker = tmp_path / "ran"
    preexec = die_with_parent(parent_pid=os.getpid() + 1)
    assert preexec is not None
    child = subprocess.Popen([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], preexec_fn=preexec)
    assert child.wait(10) == 1
    assert not marker.exists()


def test_lifecycle__no_parent_death_signal_for_children_of_other_threads() -> None:
    # Linux would signal such a child when the starting *thread* ends, e.g. a pool thread, not the process.
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(die_with_parent()))
    thread.start()
    thread.join()
    assert found == [None]
    assert die_with_parent() is not None  # here, in the main thread, on Linux


def test_lifecycle__stop_process_kills_what_ignores_sigterm() -> None:
    stubborn = start_child([sys.executable, "-c", "import signal, sys, time\n"
                            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                            "print('ready', flush=True)\n"
                            "time.sleep(120)\n"], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        asked = time.monotonic()
        assert stop_process(stubborn, timeout=0.5) == -signal.SIGKILL
        assert time.monotonic() - asked < 5
    finally:
        stubborn.kill()
        stubborn.wait(10)


def test_lifecycle__first_stop_signal_raises_and_later_ones_are_ignored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with pytest.raises(Stopped) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, in the main thread
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal, as if during the stop: must not raise
        time.sleep(0.1)
    assert raised.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
