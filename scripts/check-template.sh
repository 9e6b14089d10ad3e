#!/usr/bin/env bash
# Check template.yaml offline: cfn-lint, the project's IAM/table policy check (and its self-test),
# and `sam validate --lint`. No AWS credentials and no network are needed.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/check-template.sh [--help]

Checks the SAM template offline, in order, and fails on the first failing step:
  1. cfn-lint TEMPLATE                      (CloudFormation + SAM transform lint; must be clean)
  2. check_template_policies.py --self-test (proves the policy check can fail)
  3. check_template_policies.py TEMPLATE    (no Resource "*" on ecs:RunTask, iam:PassRole,
                                             dynamodb:*, GetSecretValue; RunTask only with an
                                             ecs:cluster condition, PassRole only with
                                             iam:PassedToService; no Scan, DeleteItem or
                                             BatchWriteItem; UpdateItem only on id, status,
                                             doc (dynamodb:Attributes); no DynamoDB action the
                                             lifecycle function does not use; the table is
                                             retained, deletion-protected, PITR and TTL on)
  4. sam validate --lint --template TEMPLATE

Settings (environment variables):
  TEMPLATE   template to check (default: template.yaml at the repository root)

Tools come from .venv/bin/ when present (scripts/setup.sh installs requirements-dev.txt there),
else from PATH. sam runs with SAM_CLI_TELEMETRY=0, AWS_DEFAULT_REGION=us-east-1, no credentials
and its version check pre-empted, so it makes no network call.
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "check-template.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
template="${TEMPLATE:-template.yaml}"

# tool NAME: the .venv copy when present, else the one on PATH.
tool() {
  if [[ -x "$root/.venv/bin/$1" ]]; then
    echo "$root/.venv/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    echo "check-template.sh: '$1' not found in .venv/bin or PATH (run scripts/setup.sh, or pip install -r requirements-dev.txt)" >&2
    return 1
  fi
}

[[ -f "$template" ]] || { echo "check-template.sh: TEMPLATE '$template' does not exist" >&2; exit 1; }
cfn_lint="$(tool cfn-lint)"
sam="$(tool sam)"
python="$(tool python3)"

step() { printf '\n==> %s\n' "$*"; }

step "1/4 cfn-lint $template (CloudFormation and SAM schema, intrinsic functions, references)"
"$cfn_lint" "$template"
echo "cfn-lint: clean"

step "2/4 policy check self-test (each injected bad template must be caught)"
"$python" scripts/python/check_template_policies.py --self-test

step "3/4 policy check on $template (no wildcard resources on RunTask/PassRole/DynamoDB/secrets; RunTask/PassRole conditions; EC2 instance actions only on opted-in instances, CreateTags only with ec2:CreateAction; table retained, protected, PITR)"
"$python" scripts/python/check_template_policies.py "$template"

step "4/4 sam validate --lint --template $template (SAM transform + cfn-lint, offline)"
sam_home="$(mktemp -d)"
trap 'rm -rf "$sam_home"' EXIT
# SAM CLI checks PyPI for a newer version once a week; record a fresh check so it makes no call.
printf '{"lastVersionCheck": %s.0, "telemetryEnabled": false}\n' "$(date +%s)" >"$sam_home/metadata.json"
env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
  SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR="$sam_home" \
  AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  "$sam" validate --lint --template "$template"

printf '\ncheck-template.sh: all template checks passed\n'
