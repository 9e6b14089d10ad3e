#!/usr/bin/env bash
# Fuzzes the parsers with libFuzzer (the cargo-fuzz crate in fuzz/): builds every target with
# `cargo +nightly fuzz build` (address sanitizer, debug assertions), then runs each target, or those
# named, for a fixed number of executions on a temporary copy of its committed corpus (fuzz/corpus/
# and fuzz/regressions/), so the tree does not grow. Prints executions, result and time per target.
# A crashing input is copied to fuzz/regressions/<target>/ (the test suite replays it) and the
# script exits 1. Needs: rustup toolchain install nightly; cargo install cargo-fuzz.
# Usage: scripts/fuzz.sh [--help] [--runs N] [--json FILE|-] [--no-build] [--list] [TARGET...]
#   --runs N     executions per target (default: FUZZ_RUNS, else 250000: about 20 min on 2 cores)
#   --json FILE  also write a JSON summary to FILE (`-`: stdout, after the table)
#   --no-build   use the binaries already in fuzz/target (after a build with the same toolchain)
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all_targets() { for f in fuzz/fuzz_targets/*.rs; do basename "$f" .rs; done; }

runs="${FUZZ_RUNS:-250000}"
json=""
build=1
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --list) all_targets; exit 0 ;;
    --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
    --runs=*) runs="${1#*=}"; shift ;;
    --json) json="${2:?--json needs a file name or -}"; shift 2 ;;
    --json=*) json="${1#*=}"; shift ;;
    --no-build) build=0; shift ;;
    -*) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --runs / FUZZ_RUNS must be a positive integer, not '$runs'" >&2; exit 2; }

known="$(all_targets)"
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets <<<"$known"
fi
for t in "${targets[@]}"; do
  grep -qx -- "$t" <<<"$known" || { echo "fuzz.sh: no fuzz target '$t'; targets: $(tr '\n' ' ' <<<"$known")" >&2; exit 2; }
done

# The tools, with what to install when they are missing.
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is required (libFuzzer and sanitizers need it): rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is required: cargo install cargo-fuzz" >&2
  exit 1
fi

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bindir="fuzz/target/$triple/release"
if [[ "$build" -eq 1 ]]; then
  echo "== cargo +nightly fuzz build (all targets; the first build compiles the AWS SDK with sanitizers: many minutes)"
  started=$SECONDS
  cargo +nightly fuzz build
  echo "built in $((SECONDS - started)) s"
fi
for t in "${targets[@]}"; do
  [[ -x "$bindir/$t" ]] || { echo "fuzz.sh: $bindir/$t not built (run without --no-build)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

results="$work/results.tsv"
: >"$results"
failed=0
printf '\n%-26s %12s %10s %8s  %s\n' target executions result seconds artifact
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  for dir in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
    if [[ -d "$dir" ]]; then find "$dir" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$corpus/" \;; fi
  done
  log="$work/$t.log"
  started="$(date +%s.%N)"
  rc=0
  # -timeout: one input running 30 s is a hang, reported like a crash.
  "$bindir/$t" -runs="$runs" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  secs="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  [[ -n "$execs" ]] || execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)"
  [[ -n "$execs" ]] || execs="$(grep -o '^#[0-9]*' "$log" | tail -n1 | tr -d '#')"
  [[ -n "$execs" ]] || execs=0
  artifact=""
  if [[ "$rc" -eq 0 ]]; then
    result=ok
  else
    result=crash
    failed=1
    crash="$(find "$artifacts" -maxdepth 1 -type f | head -n1)"
    if [[ -n "$crash" ]]; then
      mkdir -p "fuzz/regressions/$t"
      cp "$crash" "fuzz/regressions/$t/"
      artifact="fuzz/regressions/$t/$(basename "$crash")"
      result="$(basename "$crash" | cut -d- -f1)"
    fi
    # The log (and the artifacts) also go to fuzz/artifacts/<target>/, which git ignores.
    mkdir -p "fuzz/artifacts/$t"
    cp "$log" "$artifacts"/* "fuzz/artifacts/$t/" 2>/dev/null || true
    echo "---- $t failed (exit $rc); the end of its log:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 40 >&2
  fi
  printf '%-26s %12s %10s %8s  %s\n' "$t" "$execs" "$result" "$secs" "$artifact"
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$execs" "$result" "$secs" "$artifact" >>"$results"
done

if [[ -n "$json" ]]; then
  summary="$(python3 - "$results" "$runs" <<'PY'
import json, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
targets = [
    {"target": t, "executions": int(e), "result": r, "seconds": float(s), "artifact": a or None}
    for t, e, r, s, a in rows
]
print(json.dumps({
    "runs_per_target": int(sys.argv[2]),
    "ok": all(x["result"] == "ok" for x in targets),
    "targets": targets,
}, indent=2))
PY
)"
  if [[ "$json" == "-" ]]; then echo "$summary"; else echo "$summary" >"$json"; echo "JSON summary: $json"; fi
fi

if [[ "$failed" -ne 0 ]]; then
  echo "fuzz.sh: a target failed; its input is under fuzz/regressions/<target>/ (replayed by cargo test), its log under fuzz/artifacts/<target>/" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, $runs executions each, no crash"
