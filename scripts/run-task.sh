#!/usr/bin/env bash
# Run one gitops-task on Fargate by hand (as operators do when debugging), with the launch
# contract (ORCH_* identifiers) as container overrides, exactly like the api function does.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/run-task.sh --record-id ID --service NAME --image REPO --tag TAG --environment ENV
                           [--kind gitops_pr] [--env NAME=VALUE]... [--client-token TOKEN]
                           [--started-by NAME] [--wait] [--dry-run] [--help]

Calls `aws ecs run-task` (launch type FARGATE, count 1) with container overrides carrying the
launch contract only:
  --record-id ID      -> ORCH_RECORD_ID    the record the task works on (required)
  --kind KIND         -> ORCH_JOB_KIND     job kind (default gitops_pr)
  --service NAME      -> ORCH_SERVICE      service whose overlay changes (required)
  --image REPO        -> ORCH_IMAGE        image repository, kustomize images[].name (required)
  --tag TAG           -> ORCH_TAG          new tag (required)
  --environment ENV   -> ORCH_ENVIRONMENT  overlay environment (required)
  --env NAME=VALUE    an extra override (repeatable), e.g. --env RUST_LOG=debug

Overrides are visible in DescribeTasks, EventBridge events and CloudTrail: the script refuses
names that look like secrets (containing TOKEN, SECRET, PASSWORD or KEY). Secrets reach the
container through the task definition's `secrets` only.

Other options:
  --client-token T    RunTask idempotency token (same token + same request within 24 h returns
                      the first task instead of starting another; the api function uses the
                      record id). Default: none, every call starts a task.
  --started-by NAME   startedBy of the task (default gitops-operator; the api function uses
                      gitops-orchestrator)
  --wait              wait until the task stops, then print its stop code, reason and exit code;
                      exit 1 unless the container exited 0
  --dry-run           print the RunTask request and stop (no AWS call; aws CLI not needed)
  -h, --help          this text

Settings (environment variables; the same names the api function reads):
  ECS_CLUSTER            cluster name or ARN (stack output ClusterArn)            (required)
  ECS_TASK_DEFINITION    family, family:revision or ARN (stack output TaskDefinitionArn) (required)
  ECS_SUBNETS            comma-separated subnet ids                              (required)
  ECS_SECURITY_GROUPS    comma-separated security group ids                      (required)
  ECS_ASSIGN_PUBLIC_IP   true|false (default false)
  ECS_CONTAINER_NAME     container to override (default gitops-task)
  AWS access: the usual AWS CLI settings (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL for moto).

A 200 answer with `failures` (e.g. no Fargate capacity) and no task is reported as a failure.
EOF
}

die() { echo "run-task.sh: $*" >&2; exit 1; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }

record_id="" kind="gitops_pr" service="" image="" tag="" environment=""
client_token="" started_by="gitops-operator" wait=0 dry_run=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --record-id) need_value "$@"; record_id="$2"; shift 2 ;;
    --kind) need_value "$@"; kind="$2"; shift 2 ;;
    --service) need_value "$@"; service="$2"; shift 2 ;;
    --image) need_value "$@"; image="$2"; shift 2 ;;
    --tag) need_value "$@"; tag="$2"; shift 2 ;;
    --environment) need_value "$@"; environment="$2"; shift 2 ;;
    --env) need_value "$@"; extra+=("$2"); shift 2 ;;
    --client-token) need_value "$@"; client_token="$2"; shift 2 ;;
    --started-by) need_value "$@"; started_by="$2"; shift 2 ;;
    --wait) wait=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    *) echo "run-task.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
[[ -n "$record_id" ]] || missing+=(--record-id)
[[ -n "$service" ]] || missing+=(--service)
[[ -n "$image" ]] || missing+=(--image)
[[ -n "$tag" ]] || missing+=(--tag)
[[ -n "$environment" ]] || missing+=(--environment)
for var in ECS_CLUSTER ECS_TASK_DEFINITION ECS_SUBNETS ECS_SECURITY_GROUPS; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
[[ ${#missing[@]} -eq 0 ]] || die "missing required setting(s): ${missing[*]} (see --help)"
case "${ECS_ASSIGN_PUBLIC_IP:-false}" in true | false) ;; *) die "ECS_ASSIGN_PUBLIC_IP must be true or false" ;; esac
[[ "$started_by" =~ ^[A-Za-z0-9/_-]{1,128}$ ]] || die "--started-by: up to 128 of A-Z a-z 0-9 - / _"
[[ -z "$client_token" || "$client_token" =~ ^[!-~]{1,64}$ ]] || die "--client-token: up to 64 printable ASCII characters, no spaces"

for pair in "${extra[@]}"; do
  name="${pair%%=*}"
  [[ "$pair" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env '$name': expected NAME=VALUE with NAME a variable name"
  if [[ "${name^^}" =~ TOKEN|SECRET|PASSWORD|KEY ]]; then
    die "--env $name: refusing an override that looks like a secret (overrides are visible in DescribeTasks and CloudTrail); use the task definition's secrets"
  fi
  [[ "$name" != ORCH_* ]] || die "--env $name: set the launch contract with its own flags (--record-id, --service, ...)"
done

command -v python3 >/dev/null 2>&1 || die "python3 is needed to build the request"
request="$(mktemp --suffix=.json)"
trap 'rm -f "$request"' EXIT
python3 - "$request" "$record_id" "$kind" "$service" "$image" "$tag" "$environment" "$client_token" "$started_by" "${extra[@]}" <<'PY'
import json, os, sys

out, record_id, kind, service, image, tag, environment, client_token, started_by, *extra = sys.argv[1:]
split = lambda v: [s.strip() for s in v.split(",") if s.strip()]
env = [
    ("ORCH_RECORD_ID", record_id), ("ORCH_JOB_KIND", kind), ("ORCH_SERVICE", service),
    ("ORCH_IMAGE", image), ("ORCH_TAG", tag), ("ORCH_ENVIRONMENT", environment),
] + [tuple(p.split("=", 1)) for p in extra]
overrides = {
    "containerOverrides": [{
        "name": os.environ.get("ECS_CONTAINER_NAME") or "gitops-task",
        "environment": [{"name": k, "value": v} for k, v in env],
    }]
}
size = len(json.dumps(overrides, separators=(",", ":")))
if size > 8192:
    sys.exit(f"run-task.sh: the overrides are {size} characters; RunTask accepts at most 8192")
request = {
    "cluster": os.environ["ECS_CLUSTER"],
    "taskDefinition": os.environ["ECS_TASK_DEFINITION"],
    "launchType": "FARGATE",
    "count": 1,
    "startedBy": started_by,
    "networkConfiguration": {"awsvpcConfiguration": {
        "subnets": split(os.environ["ECS_SUBNETS"]),
        "securityGroups": split(os.environ["ECS_SECURITY_GROUPS"]),
        "assignPublicIp": "ENABLED" if os.environ.get("ECS_ASSIGN_PUBLIC_IP") == "true" else "DISABLED",
    }},
    "overrides": overrides,
}
if client_token:
    request["clientToken"] = client_token
with open(out, "w", encoding="utf-8") as f:
    json.dump(request, f, indent=2)
PY

if [[ $dry_run -eq 1 ]]; then
  cat "$request"; echo
  exit 0
fi

command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (AWS CLI v2: https://docs.aws.amazon.com/cli/; or pip install awscli); --dry-run prints the request without it"

response="$(aws ecs run-task --cli-input-json "file://$request" --output json)"
task_arn="$(python3 -c '
import json, sys
r = json.load(sys.stdin)
tasks, failures = r.get("tasks") or [], r.get("failures") or []
for f in failures:
    print("run-task.sh: RunTask failure: " + " ".join(str(f.get(k)) for k in ("arn", "reason", "detail") if f.get(k)), file=sys.stderr)
if len(tasks) != 1 or failures:
    sys.exit(1)
print(tasks[0]["taskArn"])
' <<<"$response")" || die "RunTask started no task (see the failures above; capacity failures are worth retrying)"

echo "started: $task_arn"
echo "follow:  aws ecs describe-tasks --cluster '$ECS_CLUSTER' --tasks '$task_arn'"

if [[ $wait -eq 1 ]]; then
  echo "waiting for the task to stop..."
  aws ecs wait tasks-stopped --cluster "$ECS_CLUSTER" --tasks "$task_arn"
  aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" --output json | python3 -c '
import json, os, sys
task = (json.load(sys.stdin).get("tasks") or [{}])[0]
name = os.environ.get("ECS_CONTAINER_NAME") or "gitops-task"
container = next((c for c in task.get("containers") or [] if c.get("name") == name), {})
print("status:  %s  stopCode: %s  reason: %s" % (task.get("lastStatus"), task.get("stopCode"), task.get("stoppedReason")))
print(("container %s: exitCode %s %s" % (name, container.get("exitCode"), container.get("reason") or "")).rstrip())
sys.exit(0 if container.get("exitCode") == 0 else 1)
'
fi
