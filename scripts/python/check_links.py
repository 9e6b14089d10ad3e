#!/usr/bin/env python3
"""Checks every relative link in the repository's Markdown files.

For each tracked `*.md` file (`git ls-files`), every inline link `[text](target)` whose target is
not a URL (`http:`, `https:`, `mailto:`) must name a file or directory that exists, relative to
the Markdown file; a `#fragment` must name a heading of the target Markdown file (GitHub's
anchors: lower case, punctuation dropped, spaces as `-`, `-1`, `-2`... for repeated headings).
Links inside code (fenced blocks, `inline code`) are not links and are skipped.

Prints one line per broken link (`file:line: target: why`) and exits 1 if there is any.
Usage: scripts/python/check_links.py [--verbose]
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def lines_outside_code(text: str):
    """(line number, line) for every line outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def anchors(path: Path, cache: dict) -> set:
    if path not in cache:
        seen, result = {}, set()
        for _, line in lines_outside_code(path.read_text(encoding="utf-8")):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
        cache[path] = result
    return cache[path]


def check(md: Path, cache: dict, verbose: bool) -> list:
    problems = []
    text = md.read_text(encoding="utf-8")
    for n, line in lines_outside_code(text):
        bare = INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in LINK.finditer(bare)] + [m.group(1) for m in IMAGE.finditer(bare)]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # a URL: not checked here (no network)
            file_part, _, fragment = target.partition("#")
            dest = (md.parent / file_part).resolve() if file_part else md
            where = f"{md.relative_to(ROOT)}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where}: {file_part} does not exist")
                continue
            if ROOT not in dest.parents and dest != ROOT:
                problems.append(f"{where}: points outside the repository")
                continue
            if fragment:
                if dest.suffix != ".md" or dest.is_dir():
                    problems.append(f"{where}: a #fragment on a file that is not Markdown")
                elif fragment not in anchors(dest, cache):
                    problems.append(f"{where}: no heading `#{fragment}` in {dest.relative_to(ROOT)}")
                    continue
            if verbose:
                print(f"ok  {where}")
    return problems


def main() -> int:
    verbose = "--verbose" in sys.argv[1:]
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__.strip())
        return 0
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    cache, problems = {}, []
    for name in sorted(set(files)):
        path = ROOT / name
        if path.exists():
            problems += check(path, cache, verbose)
    for p in problems:
        print(p)
    print(f"{len(files)} Markdown file(s), {len(problems)} broken relative link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
