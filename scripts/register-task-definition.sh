#!/usr/bin/env bash
# Register a task definition revision of the gitops-task container by hand: from a JSON file, or
# built from environment variables. Prints the new revision's ARN.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/register-task-definition.sh [FILE.json] [--dry-run] [--help]

Registers a Fargate (ARM64) task definition revision with `aws ecs register-task-definition`
and prints its ARN. With FILE.json, registers that document (the register-task-definition
request shape, as `aws ecs register-task-definition --generate-cli-skeleton` prints it);
without it, builds the document from the settings below.

Either way the script refuses a container `environment` entry whose name looks like a secret
(contains TOKEN, SECRET, PASSWORD or KEY): secrets belong in `secrets` (Secrets Manager ARNs),
resolved by the execution role, never in plain environment.

Note: the stack's api function runs the revision CloudFormation registered (its
ECS_TASK_DEFINITION). A revision registered here is for scripts/run-task.sh (debugging) until
you point ECS_TASK_DEFINITION at it; the next `scripts/deploy.sh` registers a fresh revision.

Options:
  FILE.json   register this document instead of building one
  --dry-run   print the document and stop (no AWS call; the aws CLI is not needed)
  -h, --help  this text

Settings when building (environment variables; the stack outputs give most of them):
  Required:
    TASK_FAMILY              family name (stack output TaskDefinitionFamily)
    TASK_IMAGE_URI           container image (linux/arm64)
    TASK_EXECUTION_ROLE_ARN  execution role (stack output TaskExecutionRoleArn)
    TASK_ROLE_ARN            task role (stack output TaskRoleArn)
    TASK_LOG_GROUP           CloudWatch log group (stack output TaskLogGroupName)
    TABLE_NAME               DynamoDB table (stack output TableName)
    GITOPS_REPO_URL          HTTPS URL of the gitops repository, no credentials
    GITHUB_TOKEN_SECRET_ARN  Secrets Manager ARN of the GitHub token (-> secret GITHUB_TOKEN)
    AWS_REGION               region (or AWS_DEFAULT_REGION), also the awslogs region
  Optional:
    TASK_CPU (512), TASK_MEMORY (1024), ECS_CONTAINER_NAME (gitops-task),
    GITOPS_BASE_BRANCH (main),
    OVERLAY_PATH_TEMPLATE (kustomize/{service}/overlays/{environment}/kustomization.yaml),
    GITHUB_API_URL (https://api.github.com), GIT_AUTHOR_NAME (gitops-orchestrator),
    GIT_AUTHOR_EMAIL (gitops-orchestrator@users.noreply.github.com), GITOPS_REVIEWERS,
    GITOPS_TEAM_REVIEWERS, GITOPS_LABELS, RECORD_BASE_URL, LOG_LEVEL (info),
    PORT_CLIENT_ID_SECRET_ARN, PORT_CLIENT_SECRET_SECRET_ARN, SLACK_WEBHOOK_URL_SECRET_ARN
      (-> secrets PORT_CLIENT_ID, PORT_CLIENT_SECRET, SLACK_WEBHOOK_URL when set)
  AWS access: the usual AWS CLI settings (AWS_PROFILE, credentials, AWS_ENDPOINT_URL for moto).
EOF
}

die() { echo "register-task-definition.sh: $*" >&2; exit 1; }

file="" dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) dry_run=1; shift ;;
    -*) echo "register-task-definition.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) [[ -z "$file" ]] || die "only one FILE.json may be given"; file="$1"; shift ;;
  esac
done

command -v python3 >/dev/null 2>&1 || die "python3 is needed to build and check the JSON document"
doc="$(mktemp --suffix=.json)"
trap 'rm -f "$doc"' EXIT

if [[ -n "$file" ]]; then
  [[ -f "$file" ]] || die "file '$file' does not exist"
  cp "$file" "$doc"
else
  export AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  missing=()
  for var in TASK_FAMILY TASK_IMAGE_URI TASK_EXECUTION_ROLE_ARN TASK_ROLE_ARN TASK_LOG_GROUP TABLE_NAME GITOPS_REPO_URL GITHUB_TOKEN_SECRET_ARN AWS_REGION; do
    [[ -n "${!var:-}" ]] || missing+=("$var")
  done
  [[ ${#missing[@]} -eq 0 ]] || die "missing required setting(s): ${missing[*]} (see --help)"
  python3 - "$doc" <<'PY'
import json, os, sys

env = os.environ.get

def opt(name, default=""):
    value = env(name)
    return default if value is None else value

container = opt("ECS_CONTAINER_NAME", "gitops-task")
memory = opt("TASK_MEMORY", "1024")
environment = {
    "ORCH_STORE": "dynamodb",
    "TABLE_NAME": env("TABLE_NAME"),
    "AWS_REGION": env("AWS_REGION"),
    "RUST_LOG": opt("LOG_LEVEL", "info"),
    "GITOPS_REPO_URL": env("GITOPS_REPO_URL"),
    "GITOPS_BASE_BRANCH": opt("GITOPS_BASE_BRANCH", "main"),
    "OVERLAY_PATH_TEMPLATE": opt("OVERLAY_PATH_TEMPLATE", "kustomize/{service}/overlays/{environment}/kustomization.yaml"),
    "GITHUB_API_URL": opt("GITHUB_API_URL", "https://api.github.com"),
    "GIT_AUTHOR_NAME": opt("GIT_AUTHOR_NAME", "gitops-orchestrator"),
    "GIT_AUTHOR_EMAIL": opt("GIT_AUTHOR_EMAIL", "gitops-orchestrator@users.noreply.github.com"),
    "GITOPS_REVIEWERS": opt("GITOPS_REVIEWERS"),
    "GITOPS_TEAM_REVIEWERS": opt("GITOPS_TEAM_REVIEWERS"),
    "GITOPS_LABELS": opt("GITOPS_LABELS"),
    "RECORD_BASE_URL": opt("RECORD_BASE_URL"),
}
secrets = [("GITHUB_TOKEN", env("GITHUB_TOKEN_SECRET_ARN"))]
for name, var in (("PORT_CLIENT_ID", "PORT_CLIENT_ID_SECRET_ARN"),
                  ("PORT_CLIENT_SECRET", "PORT_CLIENT_SECRET_SECRET_ARN"),
                  ("SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL_SECRET_ARN")):
    if env(var):
        secrets.append((name, env(var)))
doc = {
    "family": env("TASK_FAMILY"),
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": opt("TASK_CPU", "512"),
    "memory": memory,
    "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
    "executionRoleArn": env("TASK_EXECUTION_ROLE_ARN"),
    "taskRoleArn": env("TASK_ROLE_ARN"),
    "containerDefinitions": [{
        "name": container,
        "image": env("TASK_IMAGE_URI"),
        "essential": True,
        # Container-level memory equal to the task's: valid on Fargate, and moto needs it.
        "memory": int(memory),
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "secrets": [{"name": k, "valueFrom": v} for k, v in secrets],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": env("TASK_LOG_GROUP"),
                "awslogs-region": env("AWS_REGION"),
                "awslogs-stream-prefix": "task",
            },
        },
    }],
}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2)
PY
fi

# Check the document: JSON, has a family and containers, and no secret-looking plain environment.
python3 - "$doc" <<'PY'
import json, re, sys
path = sys.argv[1]
try:
    doc = json.load(open(path, encoding="utf-8"))
except ValueError as e:
    sys.exit(f"register-task-definition.sh: the document is not valid JSON: {e}")
if not isinstance(doc, dict) or not doc.get("family") or not doc.get("containerDefinitions"):
    sys.exit("register-task-definition.sh: the document needs 'family' and 'containerDefinitions'")
secretish = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.I)
bad = [
    f"{c.get('name', '?')}: {e.get('name')}"
    for c in doc["containerDefinitions"]
    for e in c.get("environment") or []
    if secretish.search(str(e.get("name", "")))
]
if bad:
    sys.exit("register-task-definition.sh: refusing plain environment variables that look like secrets "
             f"({', '.join(bad)}); put them in the container's 'secrets' with a Secrets Manager ARN")
PY

if [[ $dry_run -eq 1 ]]; then
  cat "$doc"; echo
  exit 0
fi

command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (AWS CLI v2: https://docs.aws.amazon.com/cli/; or pip install awscli); --dry-run prints the document without it"
arn="$(aws ecs register-task-definition --cli-input-json "file://$doc" --query taskDefinition.taskDefinitionArn --output text)"
echo "registered: $arn"
