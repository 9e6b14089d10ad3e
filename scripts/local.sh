#!/usr/bin/env bash
# Builds the local server and the task binary, then serves the API on 127.0.0.1 with the embedded
# store and the task run as a local process. No AWS account needed.
#
# Settings (environment): PORT (default 3000; 0 picks a free port), DATA_DIR (default .data),
# INTAKE_TOKEN (unset: no authentication, with a warning), AUDIT_TOKEN / ADMIN_TOKEN (read / operate
# the audit trail; unset: those routes are closed), CARGO_PROFILE (dev or release; default
# dev), and every other setting `orchestrator serve --help` lists (SERVICE_TEMPLATE,
# IMAGE_TEMPLATE, BRANCH_ENVIRONMENTS, ..., GITOPS_REPO_URL and the task's settings).
# Usage: scripts/local.sh [--help] [extra flags for `orchestrator serve`]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
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
exec "$target/$dir/orchestrator" serve --task-binary "$target/$dir/gitops-task" "$@"
