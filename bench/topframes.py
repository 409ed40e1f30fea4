"""Summarise a py-spy ``record -f raw`` profile (collapsed stacks): the frames with the most
samples, inclusive (on the stack) and self (at the top), per thread kind.

    python bench/topframes.py profile.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "?"
        frames = []
        for part in parts:
            if part.startswith(("thread (", "process ")):
                thread = part
                continue
            frames.append(frame_name(part))
        if not frames:
            continue
        total += count
        threads[thread] += count
        for name in set(frames):
            inclusive[name] += count
        self_time[frames[-1]] += count
    print(f"{total} samples")
    for thread, count in threads.most_common():
        print(f"  {100 * count / total:5.1f}%  {thread}")
    print("\ninclusive (on the stack):")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nself (top of the stack):")
    for name, count in self_time.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
