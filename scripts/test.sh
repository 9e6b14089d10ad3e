#!/usr/bin/env bash
# The test command: installs the tools (scripts/setup.sh), starts moto on a free loopback port,
# then runs cargo fmt --check, the Markdown link check, the README's first command and the demo
# (scripts/smoke.sh), clippy -D warnings, the whole test suite, schemathesis against the local
# server, and the template checks. moto is stopped on exit, pass or fail. Checks that need an
# outside tool are required (REQUIRE_MOTO=1, REQUIRE_KUBECTL=1: missing means failed);
# REQUIRE_KUBECTL=0 lets the kubectl renders skip, and every skipped check is listed at the end.
# UPDATE_SNAPSHOTS is refused.
# Usage: scripts/test.sh [--help] [extra args for cargo test, e.g. a test name filter; schemathesis
# uses the debug server binary, so --release or -p alone would leave it stale]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A snapshot test under UPDATE_SNAPSHOTS rewrites its expected file and would compare it with itself.
if [[ -n "${UPDATE_SNAPSHOTS+set}" ]]; then
  echo "test.sh: UPDATE_SNAPSHOTS is set: refusing to run (snapshots would be rewritten, not checked)." >&2
  echo "  Rewrite them with: UPDATE_SNAPSHOTS=1 cargo test -p kustomize-set-image --test snapshots; review the diff; then unset it." >&2
  exit 2
fi

# Tests that need kubectl fail without it, unless this is set to 0 (then they skip, and are listed).
export REQUIRE_KUBECTL="${REQUIRE_KUBECTL:-1}"
# The console's browser test fails without chromedriver, unless this is set to 0.
export REQUIRE_BROWSER="${REQUIRE_BROWSER:-1}"
[[ "$REQUIRE_KUBECTL" == 1 ]] || echo "test.sh: REQUIRE_KUBECTL=$REQUIRE_KUBECTL: the kubectl kustomize renders may be skipped"

scripts/setup.sh

work="$(mktemp -d)"
moto_pid=""
# Every test that skips a check appends a line here (see the tests' moto_endpoint and kubectl helpers).
export SKIPPED_CHECKS_FILE="$work/skipped-checks.txt"
: >"$SKIPPED_CHECKS_FILE"
cleanup() {
  if [[ -n "$moto_pid" ]]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  if [[ -s "$SKIPPED_CHECKS_FILE" ]]; then
    echo "== SKIPPED CHECKS ($(sort -u "$SKIPPED_CHECKS_FILE" | wc -l)): these did not run" >&2
    sort -u "$SKIPPED_CHECKS_FILE" | sed 's/^/  /' >&2
  else
    echo "== skipped checks: none (REQUIRE_MOTO=$REQUIRE_MOTO, REQUIRE_KUBECTL=$REQUIRE_KUBECTL, REQUIRE_BROWSER=$REQUIRE_BROWSER)"
  fi
  rm -rf "$work"
}
export REQUIRE_MOTO=1
trap cleanup EXIT

echo "== starting moto"
.venv/bin/python scripts/python/moto_server.py --port-file "$work/moto.port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  [[ -s "$work/moto.port" ]] && break
  kill -0 "$moto_pid" 2>/dev/null || { cat "$work/moto.log" >&2; echo "moto failed to start" >&2; exit 1; }
  sleep 0.2
done
[[ -s "$work/moto.port" ]] || { echo "moto did not report its port" >&2; exit 1; }
export MOTO_ENDPOINT="http://127.0.0.1:$(cat "$work/moto.port")"
echo "moto at $MOTO_ENDPOINT"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== documentation links (scripts/python/check_links.py)"
.venv/bin/python scripts/python/check_links.py

echo "== the README's first command and the demo, before anything else builds (scripts/smoke.sh)"
# A clean clone has no target/: this is the newcomer's build, shared with everything below.
scripts/smoke.sh

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace "$@"

echo "== schemathesis (the OpenAPI document against the local server)"
# The server binary `cargo test --workspace` just built (a separate `cargo build -p orchestrator`
# would resolve other features and rebuild much of the dependency tree).
ORCHESTRATOR_BIN="${CARGO_TARGET_DIR:-target}/debug/orchestrator" scripts/schemathesis.sh

if [[ -x scripts/check-template.sh ]]; then
  echo "== template checks"
  scripts/check-template.sh
fi

echo "== deploy.sh --dry-run (the task may pull only from its own ECR repository)"
deploy_out="$(STACK_NAME=ci SUBNETS=subnet-1 SECURITY_GROUPS=sg-1 \
  TASK_IMAGE_URI=123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/gitops-task:1.4 \
  GITOPS_REPO_URL=https://github.com/acme/gitops \
  GITHUB_TOKEN_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:gh \
  INTAKE_TOKEN_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:intake \
  scripts/deploy.sh --dry-run --no-build 2>&1)" || { echo "$deploy_out"; exit 1; }
if ! grep -q "TaskImageRepositoryName = 'team/gitops-task'" <<<"$deploy_out"; then
  echo "$deploy_out"
  echo "test.sh: deploy.sh did not scope the ECR pull to the image's repository" >&2
  exit 1
fi
