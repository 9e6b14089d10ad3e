#!/usr/bin/env bash
# One benchmark run that prints every figure as one table at the end (nothing here asserts a
# speed; scripts/python/bench_table.py reads the `FIGURE` lines each step prints):
#   - the local server: start-to-ready, one-client latency per endpoint, and intake throughput
#     with 32 keep-alive clients (functions/examples/intake_load.rs) (release build);
#   - the api and lifecycle Lambda binaries through the Runtime API emulator against moto: init,
#     cold start, warm invocations, peak RSS (release build);
#   - building a reqwest client: the platform verifier beside one CA bundle file
#     (clients/examples/client_build.rs);
#   - webhook -> branch pushed and -> pull request opened through the local server and the
#     task, on the demo's small repository and on a generated large one (10,000 files, 5,000
#     commits, served with uploadpack.allowFilter as GitHub does), partial and shallow clone,
#     beside a full clone + commit + push of the same repository, git alone
#     (scripts/python/bench_gitops.py); and the no-clone
#     mode (GITOPS_CLONE=github-api) against the GitHub mock over a local bare repository;
#   - package sizes: each Lambda binary stripped and zipped (x86_64 release; arm64 as SAM builds
#     it when BENCH_ARM64=1, or when target/lambda/<bin>/bootstrap exists from an earlier
#     `cargo lambda build --release --arm64`).
# Usage: scripts/bench.sh [--help]   Settings: BENCH_REQUESTS (default 500), BENCH_GITOPS_RUNS
# (runs of each way on the large repository, default 5), BENCH_GITOPS_SMALL_RUNS (on the small
# one, default 30: tens of milliseconds each, and more runs steady the median), BENCH_SECONDS
# (intake load, default 10), BENCH_WORK (a directory that keeps the generated large repository
# between runs), BENCH_ARM64=1 (build the arm64 Lambda packages with
# cargo-lambda first: many minutes on a small machine).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/bench.log"

# `FIGURE` line for a binary's size and its zip (`zip -9`, what Lambda stores).
size_figure() {
  .venv/bin/python - "$@" <<'PY'
import io, os, sys, zipfile
name, path, what = sys.argv[1:4]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(path, "bootstrap")
print(f"FIGURE package size|{name}: {what}, binary / zipped|{os.path.getsize(path) / 1e6:.2f} MB / {len(buf.getvalue()) / 1e6:.2f} MB|")
PY
}

steps() {
  local moto_pid="" server_pid=""
  trap '[[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; [[ -n "$moto_pid" ]] && kill "$moto_pid" 2>/dev/null; true' EXIT

  echo "== building (release)"
  cargo build --release --quiet -p orchestrator --bins --examples -p gitops-task
  local target="${CARGO_TARGET_DIR:-$root/target}"

  echo "== local server"
  .venv/bin/python scripts/python/bench_local.py "$target/release/orchestrator" --requests "${BENCH_REQUESTS:-500}"
  local data="$work/load-data"
  mkdir -p "$data"
  env -u INTAKE_TOKEN -u ADMIN_TOKEN PORT=0 DATA_DIR="$data" TASK_BINARY=/bin/true RUST_LOG=warn AUDIT_TOKEN="bench-$RANDOM$RANDOM" \
    "$target/release/orchestrator" serve >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  for _ in $(seq 1 100); do grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  local url
  url="$(sed -n 's/^listening on //p' "$work/serve.out")"
  [[ -n "$url" ]] || { cat "$work/serve.err"; echo "the local server did not start" >&2; return 1; }
  BENCH_SECONDS="${BENCH_SECONDS:-10}" "$target/release/examples/intake_load" "$url" failed
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""

  echo "== Lambda binaries (Runtime API emulator + moto)"
  .venv/bin/python scripts/python/moto_server.py --port-file "$work/port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.2; done
  MOTO_ENDPOINT="http://127.0.0.1:$(cat "$work/port")" REQUIRE_MOTO=1 \
    cargo test --release --quiet -p orchestrator --test lambda_runtime -- --nocapture --test-threads 1 2>&1 \
    | grep -o -E '(BENCH|FIGURE).*'
  # (`grep -o`: with --quiet, a test's progress dot can precede its line.)

  echo "== HTTPS clients: building a reqwest client, the platform verifier beside one bundle file (release)"
  cargo build --release --quiet -p orchestrator-clients --features http --example client_build
  env -u SSL_CERT_FILE -u SSL_CERT_DIR "$target/release/examples/client_build"

  echo "== gitops: webhook -> branch pushed / PR opened, small and large repository, beside the full-clone way (release build)"
  .venv/bin/python scripts/python/bench_gitops.py "$target/release/orchestrator" "$target/release/gitops-task" \
    --runs "${BENCH_GITOPS_RUNS:-5}" --small-runs "${BENCH_GITOPS_SMALL_RUNS:-30}" \
    ${BENCH_WORK:+--work "$BENCH_WORK"}

  echo "== gitops: the no-clone mode against the GitHub mock over a local bare repository (release build)"
  cargo test --release --quiet -p gitops-task --test gitops_no_clone -- --nocapture \
    opens_a_pr_with_one_commit_made_through_the_api_and_no_clone 2>&1 | grep -o -E '(TIMING|FIGURE).*'

  echo "== package sizes"
  if [[ "${BENCH_ARM64:-0}" == 1 ]]; then
    scripts/sam-build.sh || echo "the arm64 build failed (scripts/sam-build.sh): no arm64 sizes"
  fi
  local bin resource
  for bin in api lifecycle port-kafka events recovery; do
    size_figure "$bin" "$target/release/$bin" "x86_64 release (stripped)"
    case "$bin" in
      api) resource=ApiFunction ;; lifecycle) resource=LifecycleFunction ;;
      port-kafka) resource=PortKafkaFunction ;; events) resource=EventsFunction ;;
      recovery) resource=RecoveryFunction ;;
    esac
    if [[ -f ".aws-sam/build/$resource/bootstrap" ]]; then
      size_figure "$bin" ".aws-sam/build/$resource/bootstrap" "arm64 (sam build)"
    elif [[ -f "$target/lambda/$bin/bootstrap" ]]; then
      size_figure "$bin" "$target/lambda/$bin/bootstrap" "arm64 (cargo lambda build)"
    fi
  done
}

steps 2>&1 | tee "$log"
echo
.venv/bin/python scripts/python/bench_table.py "$log"
