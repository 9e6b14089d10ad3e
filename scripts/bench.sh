#!/usr/bin/env bash
# Benchmarks that print figures (nothing here asserts a speed):
#   - the local server: start-to-ready time and request latency (release build);
#   - each Lambda binary's cold start (process start -> first answer) and peak memory through the
#     Runtime API emulator against moto (release build);
#   - the gitops task: process start -> pull request opened, against a local bare repository and a
#     GitHub mock (release build);
#   - webhook -> pull request opened through the local server and the task, on the demo's small
#     repository and on a generated large one (10,000 files, 5,000 commits, served with
#     uploadpack.allowFilter as GitHub does), partial and shallow clone, beside a full clone +
#     commit + push of the same repository (scripts/python/bench_gitops.py).
# Usage: scripts/bench.sh [--help]   Settings: BENCH_REQUESTS (default 500), BENCH_GITOPS_RUNS
# (default 5), BENCH_WORK (a directory that keeps the generated large repository between runs).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >/dev/null

echo "== building (release)"
cargo build --release --quiet -p orchestrator --bins -p gitops-task
target="${CARGO_TARGET_DIR:-$root/target}"

echo "== local server"
.venv/bin/python scripts/python/bench_local.py "$target/release/orchestrator" --requests "${BENCH_REQUESTS:-500}"

echo "== Lambda cold starts (Runtime API emulator + moto)"
work="$(mktemp -d)"
moto_pid=""
trap '[[ -n "$moto_pid" ]] && kill "$moto_pid" 2>/dev/null; rm -rf "$work"' EXIT
.venv/bin/python scripts/python/moto_server.py --port-file "$work/port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.2; done
MOTO_ENDPOINT="http://127.0.0.1:$(cat "$work/port")" REQUIRE_MOTO=1 \
  cargo test --release --quiet -p orchestrator --test lambda_runtime -- --nocapture --test-threads 1 2>&1 | grep -o 'BENCH.*'
# (`grep -o`: with --quiet, a test's progress dot can precede its line.)

echo "== gitops task: start -> PR opened (local bare repository, GitHub mock; release build)"
cargo test --release --quiet -p gitops-task --test gitops_binary -- --nocapture \
  opens_the_pr_and_reports_it_with_no_subcommand 2>&1 | grep -o 'TIMING.*'

echo "== gitops: webhook -> PR opened, small and large repository, beside the full-clone way (release build)"
.venv/bin/python scripts/python/bench_gitops.py "$target/release/orchestrator" "$target/release/gitops-task" \
  --runs "${BENCH_GITOPS_RUNS:-5}" ${BENCH_WORK:+--work "$BENCH_WORK"}
