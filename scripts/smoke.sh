#!/usr/bin/env bash
# The README's first command, as a newcomer runs it: starts `scripts/local.sh` (it builds what it
# needs) on a free PORT with a temporary DATA_DIR, waits for it to answer, posts the orb fixture,
# checks the record it answers and lists, and stops it; then runs `scripts/demo.sh` and checks that
# it pushed the branch with the new tag. scripts/test.sh runs this before anything else builds,
# so a clean clone fails the test command whenever the first command or the demo would fail.
# Settings (environment): SMOKE_TIMEOUT (seconds for each script to answer, default 600: the
# first build of a clean clone takes about 4 minutes), CARGO_TARGET_DIR.
# Usage: scripts/smoke.sh [--help] [--local-only]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
local_only=0
if [[ "${1:-}" == "--local-only" ]]; then local_only=1; shift; fi
if [[ $# -gt 0 ]]; then
  echo "smoke.sh: unexpected argument '$1' (see --help)" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
timeout_s="${SMOKE_TIMEOUT:-600}"
fixture="tests/fixtures/circleci-orb/success.json"
work="$(mktemp -d "${TMPDIR:-/tmp}/smoke.XXXXXX")"
server=""
fail() {
  echo "smoke.sh: FAILED: $*" >&2
  if [[ -s "$work/local.log" ]]; then
    echo "--- scripts/local.sh output (first 20 lines)" >&2
    head -n 20 "$work/local.log" >&2
  fi
  exit 1
}
cleanup() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
    # local.sh execs the server, so this is the server's own pid.
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# 1. scripts/local.sh exactly as the README says, with a free PORT and a temporary DATA_DIR.
port="$(free_port)"
echo "== smoke: scripts/local.sh (PORT=$port, DATA_DIR in $work)"
start=$SECONDS
# No AUDIT_TOKEN: local.sh makes one in DATA_DIR/audit-token, which the README's curl reads.
env -u INTAKE_TOKEN -u AUDIT_TOKEN -u ADMIN_TOKEN -u GITOPS_REPO_URL PORT="$port" DATA_DIR="$work/data" \
  scripts/local.sh >"$work/local.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
until curl -s -o /dev/null "$base/openapi.json"; do
  kill -0 "$server" 2>/dev/null || fail "scripts/local.sh exited before answering"
  ((SECONDS - start < timeout_s)) || fail "scripts/local.sh did not answer within ${timeout_s}s"
  sleep 0.5
done
echo "local.sh answered after $((SECONDS - start)) s"
[[ -s "$work/data/audit-token" ]] || fail "scripts/local.sh made no DATA_DIR/audit-token"
[[ "$(stat -c %a "$work/data/audit-token")" == "600" ]] || fail "DATA_DIR/audit-token is not mode 600"
audit="$(cat "$work/data/audit-token")"
grep -qF "$audit" "$work/local.log" && fail "scripts/local.sh printed the audit token"

code="$(curl -s -o "$work/post.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data-binary "@$fixture" "$base/pullrequests")"
[[ "$code" == "202" ]] || fail "POST /pullrequests answered $code, not 202: $(cat "$work/post.json")"
id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/post.json")" ||
  fail "no record id in $(cat "$work/post.json")"
curl -s -o "$work/list.json" -H "Authorization: Bearer $audit" "$base/pullrequests"
python3 - "$work/list.json" "$id" <<'PY' || fail "the record is not listed as expected: $(cat "$work/list.json")"
import json, sys
listing, rid = json.load(open(sys.argv[1])), sys.argv[2]
records = [r for r in listing["records"] if r["id"] == rid]
assert len(records) == 1, f"record {rid} listed {len(records)} times"
r = records[0]
assert r["source"] == "circleci_orb", r["source"]
assert r["status"] in ("received", "dispatched", "running", "failed"), r["status"]
print(f"record {rid}: source {r['source']}, status {r['status']}")
PY
# With no gitops repository configured the task (a local process) fails at once and says why:
# proof that the server found and ran the task binary.
for _ in $(seq 1 120); do
  curl -s -o "$work/record.json" -H "Authorization: Bearer $audit" "$base/pullrequests/$id"
  grep -q '"status":"failed"' "$work/record.json" && break
  sleep 0.5
done
grep -q 'GITOPS_REPO_URL' "$work/record.json" ||
  fail "the task did not end the record naming GITOPS_REPO_URL: $(cat "$work/record.json")"
echo "record $id: failed, naming GITOPS_REPO_URL (the task ran)"
kill "$server"
wait "$server" 2>/dev/null || true
server=""
echo "== smoke: scripts/local.sh OK"

[[ "$local_only" == 1 ]] && exit 0

# 2. scripts/demo.sh: the whole flow against a throwaway gitops repository.
echo "== smoke: scripts/demo.sh"
start=$SECONDS
DEMO_DIR="$work/demo" timeout "$timeout_s" scripts/demo.sh >"$work/demo.out" 2>"$work/demo.err" ||
  { cat "$work/demo.err" >&2; fail "scripts/demo.sh failed"; }
grep -q '^+    newTag: "8f59df978e3fa133a2ee39ff66b3382342ce958c"   # keep quoted$' "$work/demo.out" ||
  { cat "$work/demo.out" >&2; fail "scripts/demo.sh did not show the new tag in the branch diff"; }
grep -q '^--- git diff main\.\..* (1+/1- lines)$' "$work/demo.out" ||
  { cat "$work/demo.out" >&2; fail "scripts/demo.sh's branch diff is not a one-line change"; }
echo "== smoke: scripts/demo.sh OK ($((SECONDS - start)) s)"
