"""The bare-client side of the email row: aiosmtplib sending one prebuilt message over and over, in a process of
its own (the SMTP sink runs in a thread of the benchmark's process, so a sender there would share its GIL).

`python -m bench.smtp_blast PORT CONNECTIONS MESSAGES EML` opens CONNECTIONS connections to 127.0.0.1:PORT, prints
`ready`, waits for a line on stdin, sends the message in the file EML MESSAGES times spread over the connections
(each connection sends one message after another, as Herald's pool does), and prints the seconds it took.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiosmtplib


async def blast(port: int, connections: int, messages: int, raw: bytes) -> float:
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) for _ in range(connections)]
    for client in clients:
        await client.connect()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    queue = iter(range(messages))

    async def work(client: aiosmtplib.SMTP) -> None:
        for i in queue:
            await client.sendmail("no-reply@example.com", [f"p{i}@example.org"], raw)

    started = time.perf_counter()
    await asyncio.gather(*(work(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("messages", type=int)
    parser.add_argument("eml", type=Path)
    args = parser.parse_args()
    print(asyncio.run(blast(args.port, args.connections, args.messages, args.eml.read_bytes())), flush=True)
