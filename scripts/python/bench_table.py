"""Prints scripts/bench.sh's figures as one Markdown table.

Usage: python bench_table.py <log>
Reads the `FIGURE <group>|<what>|<figure>|<note>` lines the benchmark steps print (in any order,
among their other output) and prints them grouped, in the order the groups first appeared, under
the date and the machine's load. Asserts nothing: a figure that is missing is listed as missing.
"""

import os
import sys
import time

EXPECTED_GROUPS = [
    "local server",
    "Lambda api (Runtime API emulator, moto)",
    "Lambda lifecycle (Runtime API emulator, moto)",
    "gitops small (demo)",
    "gitops large",
    "gitops small (test repository)",
    "package size",
]


def main():
    groups = {}
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        for line in f:
            i = line.find("FIGURE ")
            if i < 0:
                continue
            parts = line[i + len("FIGURE "):].rstrip("\n").split("|")
            if len(parts) < 3:
                continue
            group, what, figure = parts[0], parts[1], parts[2]
            note = parts[3] if len(parts) > 3 else ""
            groups.setdefault(group, []).append((what, figure, note))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Figures of one run, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, load average {load}:")
    print()
    print("| part | what | figure | note |")
    print("|---|---|---|---|")
    for group, rows in groups.items():
        for what, figure, note in rows:
            print(f"| {group} | {what} | {figure} | {note} |")
    missing = [g for g in EXPECTED_GROUPS if g not in groups]
    if missing:
        print()
        print("missing (a step failed or was skipped): " + ", ".join(missing))


if __name__ == "__main__":
    main()
