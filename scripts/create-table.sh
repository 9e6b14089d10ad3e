#!/usr/bin/env bash
# Create the DynamoDB records table and its indexes (by_time, by_service, by_status), e.g. in
# moto for local tests. A wrapper of `orchestrator create-table`.
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: scripts/create-table.sh [--table-name NAME] [--help]

Runs `cargo run -q -p orchestrator --bin orchestrator -- create-table`, which creates the table
(partition key id, on-demand) with its three global secondary indexes. The deployed stack
creates its own table (template.yaml); this is for moto and hand-made test tables.

Options:
  --table-name NAME   same as TABLE_NAME
  -h, --help          this text

Settings (environment variables):
  TABLE_NAME         table to create (required)
  INDEX_BY_TIME      index over all records (default by_time)
  INDEX_BY_SERVICE   index by service (default by_service)
  INDEX_BY_STATUS    index by status (default by_status)
  AWS_ENDPOINT_URL   endpoint of a DynamoDB emulator such as moto (e.g. http://127.0.0.1:5000);
                     unset = the real DynamoDB of the configured account
  AWS_REGION         region (moto accepts any, e.g. us-east-1)
  AWS credentials    the usual SDK settings; for moto any values, e.g.
                     AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
EOF_USAGE
}

die() { echo "create-table.sh: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --table-name) [[ $# -ge 2 && -n "$2" ]] || die "--table-name needs a NAME"; export TABLE_NAME="$2"; shift 2 ;;
    *) echo "create-table.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ -n "${TABLE_NAME:-}" ]] || die "missing required setting: TABLE_NAME (or --table-name; see --help)"
[[ -n "${AWS_REGION:-${AWS_DEFAULT_REGION:-}}${AWS_PROFILE:-}" ]] ||
  echo "create-table.sh: note: AWS_REGION is not set; the SDK then needs a region from ~/.aws/config (moto: use AWS_REGION=us-east-1)" >&2
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "create-table.sh: creating $TABLE_NAME at ${AWS_ENDPOINT_URL:-the AWS DynamoDB endpoint}"
exec cargo run -q -p orchestrator --bin orchestrator -- create-table
