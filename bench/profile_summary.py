"""Top costs from a py-spy profile in raw (collapsed) format: `py-spy record --format raw -o FILE -p PID`.

`python -m bench.profile_summary FILE [--top 40] [--match herald]` prints, per function, the share of samples in
which it is running (self) and on the stack (inclusive), of the main thread's busy samples: the event loop waiting
in `select` is idle, and so are other threads (py-spy counts a thread pool's wait for work as running).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def frames(stack: str) -> list[str]:
    """`a (file.py:12);b (other.py:3)` -> function and file, without line numbers (so a function is one entry)."""
    return [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]


def summarise(path: Path, top: int, match: str | None) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        names = frames(stack)
        if not names or (not names[0].startswith("<module>") and "_run_module_as_main" not in names[0]):
            continue  # another thread
        total += count
        if "select (selectors.py)" in names[-1]:
            idle += count
            continue
        self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    busy = total - idle
    out = [f"main thread: {total} samples, {idle} idle ({idle / total:.0%}), {busy} busy; shares are of busy ones"]
    out.append("\nself (running the function itself):")
    out += [f"{n / busy:6.1%}  {name}" for name, n in self_time.most_common(top) if not match or match in name]
    out.append("\ninclusive (the function or what it called):")
    shown = [(name, n) for name, n in inclusive.most_common() if not match or match in name][:top]
    out += [f"{n / busy:6.1%}  {name}" for name, n in shown]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", help="only functions whose name or file contains this")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.match))
