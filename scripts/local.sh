#!/usr/bin/env bash
# Builds the local server and the task binary, then serves the API on 127.0.0.1 with the embedded
# store and the task run as a local process. No AWS account needed.
#
# Settings (environment): PORT (default 3000; 0 picks a free port), DATA_DIR (default .data),
# INTAKE_TOKEN (unset: no authentication, with a warning), AUDIT_TOKEN (reads the audit trail;
# unset: a random one is made once per DATA_DIR, in DATA_DIR/audit-token, mode 600; set empty: the
# read routes stay closed), ADMIN_TOKEN (re-dispatch, redact; unset: closed), CARGO_PROFILE (dev or
# release; default dev), and every other setting `orchestrator serve --help` lists (SERVICE_TEMPLATE,
# IMAGE_TEMPLATE, BRANCH_ENVIRONMENTS, ..., GITOPS_REPO_URL and the task's settings).
# Usage: scripts/local.sh [--help] [extra flags for `orchestrator serve`]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${CARGO_PROFILE:-dev}"
dir="debug"
[[ "$profile" == "release" ]] && dir="release"

echo "local: building orchestrator and gitops-task ($profile profile)..." >&2
cargo build --quiet --profile "$profile" -p orchestrator -p gitops-task --bin orchestrator --bin gitops-task
target="${CARGO_TARGET_DIR:-$root/target}"
export PORT="${PORT:-3000}"
export DATA_DIR="${DATA_DIR:-$root/.data}"
# Reading the records needs the audit credential: make one for this data directory, once, readable
# by this user only. The token itself is never printed.
if [[ -z "${AUDIT_TOKEN+set}" ]]; then
  token_file="$DATA_DIR/audit-token"
  if [[ ! -s "$token_file" ]]; then
    mkdir -p "$DATA_DIR"
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
  fi
  AUDIT_TOKEN="$(cat "$token_file")"
  export AUDIT_TOKEN
  echo "local: the audit token (GET /pullrequests) is in $token_file:" >&2
  echo "local:   curl -H \"Authorization: Bearer \$(cat $token_file)\" http://127.0.0.1:$PORT/pullrequests" >&2
fi
exec "$target/$dir/orchestrator" serve --task-binary "$target/$dir/gitops-task" "$@"
