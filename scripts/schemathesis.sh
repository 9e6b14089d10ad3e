#!/usr/bin/env bash
# API fuzzing of the real local server with schemathesis (pinned in requirements-dev.txt, installed
# into .venv by scripts/setup.sh): starts `orchestrator serve --port 0` (temporary data dir, intake
# token, CircleCI and Port secrets, examples/rules.yaml, /bin/true as the task binary), then runs
# every schemathesis check against its GET /openapi.json and fails on any failure. The webhook
# deliveries are signed by scripts/python/schemathesis_hooks.py, which also fails a 401, or a 404
# that is not "no such record", to an authenticated schema-valid request. No network needed.
# Usage: scripts/schemathesis.sh [--help] [--max-examples N] [--seed N|random] [-- <schemathesis run args>]
#   SCHEMATHESIS_MAX_EXAMPLES (default 50 per operation and phase), SCHEMATHESIS_SEED (default 6),
#   ORCHESTRATOR_BIN (default: target/debug/orchestrator, built with cargo if missing or stale).
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
seed="${SCHEMATHESIS_SEED:-6}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --max-examples) max_examples="${2:?--max-examples needs a number}"; shift 2 ;;
    --max-examples=*) max_examples="${1#*=}"; shift ;;
    --seed) seed="${2:?--seed needs a number or 'random'}"; shift 2 ;;
    --seed=*) seed="${1#*=}"; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "schemathesis.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$max_examples" =~ ^[1-9][0-9]*$ ]] || { echo "schemathesis.sh: --max-examples must be a positive integer, not '$max_examples'" >&2; exit 2; }
[[ "$seed" == random || "$seed" =~ ^[0-9]+$ ]] || { echo "schemathesis.sh: --seed must be a number or 'random', not '$seed'" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

st=".venv/bin/schemathesis"
if [[ ! -x "$st" ]]; then
  echo "schemathesis.sh: $st not found: run scripts/setup.sh (it installs requirements-dev.txt into .venv)" >&2
  exit 1
fi

bin="${ORCHESTRATOR_BIN:-}"
if [[ -z "$bin" ]]; then
  echo "== cargo build -p orchestrator --bin orchestrator"
  cargo build --quiet -p orchestrator --bin orchestrator
  bin="${CARGO_TARGET_DIR:-target}/debug/orchestrator"
fi
[[ -x "$bin" ]] || { echo "schemathesis.sh: server binary '$bin' not found or not executable" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Throwaway secrets: the server and schemathesis only ever see each other.
token="st-token-$RANDOM$RANDOM"
# The admin token opens every audit route (list, show, redispatch, redact); the intake token none.
admin_token="st-admin-$RANDOM$RANDOM"
circleci_secret="st-circleci-$RANDOM$RANDOM"
port_secret="st-port-$RANDOM$RANDOM"
# /bin/true as the task: accepted deliveries are recorded and "launched", and
# nothing clones, pushes or calls out. DEFAULT_ORG lets every schema-valid orb payload derive its
# image (`{org}/{reponame}`) even when `api_link` names no organisation: without it such a payload
# is a documented 400 (`api_link`), which depends on the deployment, not on the request.
task_binary=""
for t in /bin/true /usr/bin/true; do [[ -x "$t" ]] && { task_binary="$t"; break; }; done
[[ -n "$task_binary" ]] || { echo "schemathesis.sh: no /bin/true or /usr/bin/true to use as the task binary" >&2; exit 1; }
echo "== starting orchestrator serve (data in $work/data)"
"$bin" serve --port 0 --data-dir "$work/data" --task-binary "$task_binary" \
  --intake-token "$token" --admin-token "$admin_token" --default-org schemathesis-org \
  --circleci-webhook-secret "$circleci_secret" \
  --port-client-secret "$port_secret" --rules-file examples/rules.yaml \
  >"$work/server.out" 2>"$work/server.log" &
server_pid=$!

# The server prints `listening on http://ADDR` as its first stdout line once it is bound.
base=""
for _ in $(seq 1 300); do
  base="$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/server.out" | head -n1)"
  [[ -n "$base" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.log" >&2
    echo "schemathesis.sh: the server exited before listening" >&2
    exit 1
  fi
  sleep 0.1
done
[[ -n "$base" ]] || { cat "$work/server.log" >&2; echo "schemathesis.sh: the server did not print its address within 30 s" >&2; exit 1; }
echo "server at $base"

# Configuration schemathesis reads (a file, since some settings are per operation). Every check is
# on; the exceptions below are each for a reason the schema cannot express, and narrowed to where
# that reason holds.
cat >"$work/schemathesis.toml" <<EOF
# Nothing persisted between runs (no .schemathesis/ in the tree): each run stands on its seed.
[cache]
enabled = false

# The intake token, as the bearer scheme: schemathesis then knows the request is authenticated, and
# its ignored_auth check removes or breaks the credential itself to see the 401. (With a bare
# \`-H Authorization\` it also generates the \`token\` query scheme, and a valid header next to a
# made-up query token is rightly accepted, since either scheme suffices.)
[auth.openapi.bearer]
bearer = "\${SCHEMATHESIS_INTAKE_TOKEN}"

# The audit routes' credentials: the admin token, as Bearer and as the Basic password. (SigV4 is
# API Gateway's on AWS; locally no request carries it.)
[auth.openapi.auditBearer]
bearer = "\${SCHEMATHESIS_ADMIN_TOKEN}"

[auth.openapi.auditBasic]
username = "admin"
password = "\${SCHEMATHESIS_ADMIN_TOKEN}"

# The webhooks' signature headers, as a placeholder: scripts/python/schemathesis_hooks.py replaces
# it with the HMAC of the exact bytes sent. With these configured, schemathesis treats the requests
# as authenticated, and its ignored_auth check (which drops or breaks them) still expects a 401.
[auth.openapi.circleciSignature]
api_key = "sign-me"

[auth.openapi.portSignature]
api_key = "sign-me"

[auth.openapi.portTimestamp]
api_key = "sign-me"

# A schema-valid, authenticated request is accepted: no 401 (that would hide broken auth), no 404
# and no 403/409/429/5xx as schemathesis's defaults allow. The exceptions below are each for a
# reason the schema cannot express, narrowed to where it holds.
[checks.positive_data_acceptance]
expected-statuses = ["2xx"]

# GET /pullrequests: \`cursor\` is an opaque token the server issued (\`next_cursor\`); any other
# string, schema-valid as it is, is a documented 400 \`invalid_query\`. So for this operation a 400
# to "positive" data is right. Real cursors are exercised by the stateful phase (link NextPage).
[[operations]]
include-name = "GET /pullrequests"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]

# One record: a generated id names no record, so 404 \`not_found\` is right, and redispatching a
# record that is not \`received\` is a 409. (schemathesis_hooks.py fails a 404 with another code.)
[[operations]]
include-path-regex = '^/pullrequests/\{id\}'
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409"]

# POST /webhooks/port/runs: the body is the JSON a user writes in Port (three documented shapes,
# docs/port.md), so the schema is any object; a signed object the parser cannot read is a 400
# naming the missing field (\`runId\`, \`context\`, ...), which is right.
[[operations]]
include-name = "POST /webhooks/port/runs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
EOF

report="$work/report.json"
seed_args=()
[[ "$seed" != random ]] && seed_args=(--seed "$seed")
# use_after_free is left out: DELETE /pullrequests/{id} redacts, and the record stays readable (a
# tombstone) by design (docs/security.md), where that check expects a 404 after a DELETE.
echo "== schemathesis run $base/openapi.json (at most $max_examples examples per operation and phase)"
rc=0
(cd "$work" && SCHEMATHESIS_INTAKE_TOKEN="$token" SCHEMATHESIS_ADMIN_TOKEN="$admin_token" SCHEMATHESIS_CIRCLECI_SECRET="$circleci_secret" \
  SCHEMATHESIS_PORT_SECRET="$port_secret" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  PYTHONPATH="$root/scripts/python${PYTHONPATH:+:$PYTHONPATH}" "$root/$st" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
  --checks all \
  --exclude-checks use_after_free \
  --max-examples "$max_examples" \
  "${seed_args[@]}" \
  --generation-database none \
  --request-timeout 30 \
  --no-color \
  --report json --report-json-path "$report" \
  "${extra[@]}") || rc=$?

if [[ -s "$report" ]]; then
  .venv/bin/python - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("test_cases", {})
ops = r.get("operations", {})
print(
    f"schemathesis: {t.get('generated', 0)} test cases over {ops.get('tested', 0)} operations, "
    f"{t.get('with_failures', 0)} with failures ({t.get('unique_failures', 0)} unique), "
    f"{t.get('errored', 0)} errored; seed {r.get('seed')}"
)
PY
fi
# What the server answered, by operation and status (from its request log; 405s to other methods
# left out). The signed webhooks must have been answered past their signature check at least once.
answers="$(sed 's/\x1b\[[0-9;]*m//g' "$work/server.log" \
  | sed -nE 's/.*finished processing request.* status=([0-9]+) method=([A-Z]+) path=([^ ]*).*/\2 \3 \1/p' \
  | sed -E 's#^([A-Z]+ /pullrequests/)[^/ ]+#\1{id}#' | sort | uniq -c)"
echo "server answers (count, method, path, status):"
grep -v ' 405$' <<<"$answers" || true
for hook in /webhooks/circleci /webhooks/port; do
  if ! grep -qE "POST $hook 2[0-9][0-9]\$" <<<"$answers"; then
    echo "schemathesis.sh: no delivery to $hook was accepted: are the requests signed (scripts/python/schemathesis_hooks.py)?" >&2
    rc=1
  fi
done
if grep -q 'panicked' "$work/server.log"; then
  echo "schemathesis.sh: the server logged a panic:" >&2
  grep -B2 -A5 'panicked' "$work/server.log" >&2
  rc=1
fi
if [[ "$rc" -ne 0 ]]; then
  echo "schemathesis.sh: FAILED (schemathesis exit $rc); server log tail:" >&2
  tail -n 20 "$work/server.log" >&2
  exit "$rc"
fi
echo "schemathesis.sh: passed"
