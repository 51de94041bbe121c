"""`herald dev` and `herald demo`: the whole stack on one machine, in the foreground.

The broker, the provider simulator and the worker run as child processes (Faust owns its event loop); the
SMTP sink runs in a thread of this process and keeps every message as an `.eml` file under `<data_dir>/mail/`.

Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the stack in reverse start order, each piece with a deadline
(`consumers.dev.processes`); the children also get SIGTERM from the kernel if this process dies without stopping them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console

from consumers.app import load_catalog
from consumers.cli.publish import EventProducer, parse_status, read_topic
from consumers.cli.statusview import status_row, status_table, summary_table
from consumers.dev.broker import EmbeddedBroker, port_open
from consumers.dev.mailsink import start_mail_sink
from consumers.dev.processes import begin_stop, start_child, stop_on_signals, stop_process
from consumers.dev.samples import bad_events, sample_events, sim_behaviour
from schemas.settings import Settings
from schemas.status import FINAL_STATUSES, DeliveryStatus, Status


def _port(bootstrap: str) -> int:
    return int(bootstrap.split(",")[0].rpartition(":")[2])


DEV_PROVIDERS = "email=smtp,sendgrid;sms=twilio,vonage;voice=twilio;whatsapp=meta;push=fcm;webhook=standard"
# The dev stack's customers' webhooks live on loopback, which production refuses (SSRF guard).
DEV_ENV = {"HERALD_WEBHOOK_ALLOW_PRIVATE": "true"}
# A worker finishes or hands back its in-flight sends on SIGTERM within 10 s (issue 6); the simulator keeps nothing.
WORKER_STOP_TIMEOUT = 10.0
SIM_STOP_TIMEOUT = 5.0


def dev_settings(settings: Settings) -> Settings:
    """Every channel on, pointed at the simulator, with callbacks to this machine's web port."""
    update: dict[str, object] = {"public_url": f"http://127.0.0.1:{settings.web_port}",
                                 "sim_url": f"http://127.0.0.1:{settings.sim_port}"}
    if "providers" not in settings.model_fields_set:
        update["providers"] = DEV_PROVIDERS
    if settings.admin_token is None:  # the console and the message timeline are on in development
        update["admin_token"] = SecretStr(secrets.token_urlsafe(18))
    return settings.model_copy(update=update)


def start_herald(command: str, settings: Settings, log_path: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`herald <command>` as a child process with the given settings in its environment; it gets SIGTERM if this
    process dies (`start_child`)."""
    child_env = {**os.environ, **settings.as_env(), **(env or {})}
    with open(log_path, "ab") as log:  # closed here once started: the child has its own copy
        return start_child([sys.executable, "-m", "consumers", command], env=child_env, stdout=log,
                           stderr=subprocess.STDOUT)


def start_worker(settings: Settings, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return start_herald("worker", settings, log_path, env)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url} did not come up: its process exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


@contextlib.contextmanager
def dev_stack(settings: Settings, console: Console) -> Iterator[Settings]:
    """Broker, SMTP sink, simulator and worker, started in order and stopped in reverse, each with a deadline."""
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    mail_dir = data / "mail"
    if port_open(settings.smtp_host, settings.smtp_port):
        raise RuntimeError(f"SMTP port {settings.smtp_port} is in use; set HERALD_SMTP_PORT")
    broker = EmbeddedBroker(_port(settings.kafka_bootstrap), log_path=data / "broker.log")
    settings = dev_settings(settings)
    # Each piece registers its stop as soon as it exists, so an interruption at any point of the start stops
    # exactly what was started; the ExitStack runs the stops in reverse order.
    running = contextlib.ExitStack()
    try:
        running.callback(broker.stop)  # before start: a signal while Tansu comes up must stop it too
        broker.start()
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        created = asyncio.run(broker.create_topics(settings))
        console.print(f"[bold]broker[/bold]   Tansu on {broker.bootstrap} ({len(created)} topics)")
        controller, _ = start_mail_sink(settings.smtp_port, mail_dir)
        running.callback(controller.stop)
        console.print(f"[bold]smtp[/bold]     sink on 127.0.0.1:{settings.smtp_port}, messages in {mail_dir}/")
        sim = start_herald("sim", settings, data / "sim.log", DEV_ENV)
        running.callback(stop_process, sim, SIM_STOP_TIMEOUT)
        wait_http(f"{settings.sim_url}/_sim/health", 30, sim)
        behaviour = sim_behaviour()
        httpx.post(f"{settings.sim_url}/_sim/config", json=behaviour, timeout=5).raise_for_status()
        console.print(f"[bold]sim[/bold]      provider simulator on {settings.sim_url} "
                      f"(Twilio, Vonage, Meta, FCM, SendGrid); log in {data / 'sim.log'}")
        worker = start_worker(settings, data / "worker.log", DEV_ENV)
        running.callback(stop_process, worker, WORKER_STOP_TIMEOUT)
        wait_http(f"http://127.0.0.1:{settings.admin_port}/ready", 60, worker)
        console.print(f"[bold]worker[/bold]   web on http://127.0.0.1:{settings.web_port} (webhooks, links), "
                      f"admin on http://127.0.0.1:{settings.admin_port} (/metrics, /health, /ready); "
                      f"log in {data / 'worker.log'}")
        if settings.admin_token is not None:
            console.print(f"[bold]console[/bold]  http://127.0.0.1:{settings.admin_port}/console/ "
                          f"(admin token: {settings.admin_token.get_secret_value()})")
        yield settings
    finally:
        begin_stop()  # a signal from here on must not cut the stop short
        running.close()


async def _publish_samples(settings: Settings, include_bad: bool = True) -> int:
    catalog = load_catalog(settings)
    async with EventProducer(settings, catalog) as producer:
        events = sample_events(catalog, settings.sim_url)
        for event in events:
            await producer.publish(event)
        if include_bad:
            for event in bad_events():
                await producer.publish(event)
            await producer.publish_raw(b"{not json", key=b"user-ana")
        await producer.flush()
    return len(events) + (3 if include_bad else 0)


def run_dev(settings: Settings, console: Console) -> None:
    """`herald dev`: runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then stops the stack and returns (exit code 0:
    being stopped is how a foreground service is meant to end)."""
    with stop_on_signals():
        try:
            with dev_stack(settings, console) as live:
                count = asyncio.run(_publish_samples(live))
                console.print(f"published {count} sample events (3 of them bad on purpose). Ctrl-C stops.\n")

                async def follow() -> None:
                    async for record in read_topic(live, "status", follow=True):
                        console.print(*status_row(parse_status(record)))

                asyncio.run(follow())
        except KeyboardInterrupt:  # Ctrl-C or `Stopped` by SIGTERM/SIGHUP, at any point: the stack is down by now
            pass
        except RuntimeError as exc:
            console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
            raise SystemExit(1) from exc
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        console.print("stopped.")


def demo_settled(statuses: list[DeliveryStatus], expected_events: int) -> bool:
    """Every event has an outcome and every accepted message got as far as a final state, `sent`, or `scheduled`
    (a reminder due next week will not go during a demo). "Got as far as", not "ends at": receipts and replies
    (`replied`, `opened`) keep arriving after `sent`, and a simulated person may answer twice."""
    done = FINAL_STATUSES | {Status.SENT, Status.SCHEDULED}
    reached: dict[str, bool] = {}
    for s in statuses:
        reached[s.message_id] = reached.get(s.message_id, False) or s.status in done
    return len(reached) >= expected_events and all(reached.values())


def run_demo(settings: Settings, console: Console, *, timeout: float = 60.0) -> int:
    """`herald demo`: 0 when every message settled, 1 when not; stopped by a signal, 128 + its number (the shell's
    convention, e.g. 143 for SIGTERM), because the demo did not get to its verdict."""
    with stop_on_signals():
        try:
            with dev_stack(settings, console) as live:
                count = asyncio.run(_publish_samples(live))
                console.print(f"published {count} sample events (3 of them bad on purpose)\n")
                table = status_table("herald.status")
                statuses: list[DeliveryStatus] = []

                async def collect() -> None:
                    deadline = time.monotonic() + timeout
                    async for record in read_topic(live, "status", follow=True, idle_timeout=0.5):
                        status = parse_status(record)
                        statuses.append(status)
                        table.add_row(*status_row(status))
                        if demo_settled(statuses, count) or time.monotonic() > deadline:
                            return

                with contextlib.suppress(TimeoutError):  # what arrived is shown either way
                    asyncio.run(asyncio.wait_for(collect(), timeout + 5))
                console.print(table)
                console.print(summary_table(statuses))
                mails = len(list((Path(live.data_dir) / "mail").glob("*.eml")))
                console.print(f"{mails} emails in {Path(live.data_dir) / 'mail'}/")
                return 0 if demo_settled(statuses, count) else 1
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
            return 1
        except KeyboardInterrupt as exc:
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                console.print("stopped.")
            return 128 + getattr(exc, "signum", signal.SIGINT)
