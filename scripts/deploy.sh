#!/usr/bin/env bash
# Build (sam build, through scripts/sam-build.sh) and deploy the stack (sam deploy), then print the
# webhook URL. Every template parameter comes from an environment variable (or an --env-file).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh [--env-file FILE] [--stack-name NAME] [--region REGION]
                         [--no-build] [--dry-run] [--help]

Builds the Lambda functions (scripts/sam-build.sh) and deploys template.yaml with
`sam deploy --no-fail-on-empty-changeset`, then prints the stack's WebhookUrl output.
Needs AWS credentials for the target account (any method the AWS CLI/SDK accepts).

Options:
  --env-file FILE   read VAR=value lines (shell syntax) from FILE before checking settings
  --stack-name NAME same as STACK_NAME
  --region REGION   same as AWS_REGION
  --no-build        deploy the existing .aws-sam/build output (skip sam build)
  --dry-run         check the settings, print the parameters and the sam commands; run nothing
  -h, --help        this text

Required settings (environment variables):
  STACK_NAME                 CloudFormation stack name (also prefixes the task family and log groups)
  SUBNETS                    comma-separated subnet ids for the Fargate tasks      -> Subnets
  SECURITY_GROUPS            comma-separated security group ids for the tasks      -> SecurityGroups
  TASK_IMAGE_URI             task-image container image (linux/arm64)             -> TaskImageUri
  GITOPS_REPO_URL            HTTPS URL of the gitops repository (no credentials)  -> GitopsRepoUrl
  GITHUB_TOKEN_SECRET_ARN    Secrets Manager ARN of the GitHub token              -> GithubTokenSecretArn
  INTAKE_TOKEN_SECRET_ARN    Secrets Manager ARN of the intake token              -> IntakeTokenSecretArn

Optional settings (unset = template default on the first deploy, previous value on updates;
set to an empty string to clear an optional value):
  AWS_REGION                     region to deploy to (else the AWS CLI default)
  STAGE_NAME                     API stage, default dev                           -> StageName
  ASSIGN_PUBLIC_IP               true|false, default false                        -> AssignPublicIp
  TASK_IMAGE_REPOSITORY_NAME     ECR repository the execution role may pull from; default: the
                                 repository of TASK_IMAGE_URI when it is an ECR image, else *
                                                                                 -> TaskImageRepositoryName
  TASK_CPU / TASK_MEMORY         Fargate size, default 512 / 1024                 -> TaskCpu / TaskMemory
  GITOPS_BASE_BRANCH             default main                                     -> GitopsBaseBranch
  OVERLAY_PATH_TEMPLATE          default kustomize/{service}/overlays/{environment}/kustomization.yaml
                                                                                 -> OverlayPathTemplate
  GITHUB_API_URL                 default https://api.github.com                   -> GithubApiUrl
  GIT_AUTHOR_NAME / GIT_AUTHOR_EMAIL  commit author                               -> GitAuthorName / GitAuthorEmail
  GITOPS_REVIEWERS               comma-separated reviewer logins                  -> GitopsReviewers
  GITOPS_TEAM_REVIEWERS          comma-separated reviewer team slugs              -> GitopsTeamReviewers
  GITOPS_LABELS                  comma-separated labels                           -> GitopsLabels
  GITOPS_CLONE                   partial (default), shallow or github-api         -> GitopsClone
  RECORD_BASE_URL                base URL linked from PRs (e.g. the WebhookUrl)   -> RecordBaseUrl
  PORT_CLIENT_ID_SECRET_ARN      Secrets Manager ARN (optional)                   -> PortClientIdSecretArn
  PORT_CLIENT_SECRET_SECRET_ARN  Secrets Manager ARN (optional)                   -> PortClientSecretSecretArn
  SLACK_WEBHOOK_URL_SECRET_ARN   Secrets Manager ARN (optional)                   -> SlackWebhookUrlSecretArn
  AUDIT_TOKEN_SECRET_ARN         Secrets Manager ARN (optional): console sign-in  -> AuditTokenSecretArn
  ADMIN_TOKEN_SECRET_ARN         Secrets Manager ARN (optional): console admin    -> AdminTokenSecretArn
  PORT_API_URL                   Port REST API, default https://api.port.io (US: https://api.us.port.io)
                                                                                 -> PortApiUrl
  EXEC_COMMANDS_DIR              exec steps' command directory in the task image, default
                                 /opt/remediation/bin                            -> ExecCommandsDir
  PORT_RULES_FILE                rules file (YAML); its text becomes PORT_RULES   -> PortRules
  PORT_RULES                     the rules inline, instead of PORT_RULES_FILE     -> PortRules
                                 (required with PORT_CLIENT_SECRET_SECRET_ARN or Kafka; at most
                                 2800 bytes: Lambda allows 4 KB of variables per function,
                                 names and values of all of them)
  PORT_KAFKA_BOOTSTRAP_SERVERS   Port's Kafka brokers host:port,...; unset/empty: no Kafka function
                                                                                 -> PortKafkaBootstrapServers
  PORT_KAFKA_TOPIC               <ORG_ID>.change.log (required with brokers)      -> PortKafkaTopic
  PORT_KAFKA_CONSUMER_GROUP_ID   default <ORG_ID>.gitops-orchestrator             -> PortKafkaConsumerGroupId
  PORT_KAFKA_BATCH_SIZE          records per invocation, default 10, at most 100  -> PortKafkaBatchSize
  PORT_KAFKA_MAX_RETRY_ATTEMPTS  deliveries again of unfinished records before the
                                 on-failure queue, default 10                    -> PortKafkaMaxRetryAttempts
  PORT_KAFKA_SASL_SECRET_ARN     Secrets Manager ARN of the SASL/SCRAM-512 credentials, JSON
                                 {"username","password"} (required with brokers) -> PortKafkaSaslSecretArn
  EVENTS_INSTANCE_REBOOTS        enabled|disabled (default): EC2 reboots (CloudTrail RebootInstances,
                                 AWS Health maintenance) to the events function  -> EventsInstanceReboots
  EVENTS_INSTANCE_STATES         EC2 states whose state changes go to it, e.g. stopped,running
                                                                                 -> EventsInstanceStates
  SCHEDULE1_NAME / SCHEDULE2_NAME  EventBridge Scheduler schedules (empty: none)  -> Schedule1Name / Schedule2Name
  SCHEDULE1_EXPRESSION / SCHEDULE2_EXPRESSION  cron(...)/rate(...), default cron(0 3 * * ? *)
                                                                                 -> Schedule1Expression / ...
  SCHEDULE1_INPUT / SCHEDULE2_INPUT  the run's input (JSON), default {}          -> Schedule1Input / ...
  SCHEDULE_TIMEZONE              default UTC                                      -> ScheduleTimezone
  INSTANCE_OPT_IN_TAG_VALUE      value of the tag orchestrator:remediate an instance needs for
                                 aws.ec2.* steps, default true                   -> InstanceOptInTagValue
                                 (AWS events and schedules need PORT_RULES; docs/events.md)
  CIRCLECI_WEBHOOK_SECRET_ARN    Secrets Manager ARN of CircleCI's webhook signing secret (optional;
                                 unset: POST /webhooks/circleci answers 503)     -> CircleciWebhookSecretArn
  CIRCLECI_WORKFLOWS             workflows that roll out, comma-separated, default *  -> CircleciWorkflows
  CIRCLECI_JOBS                  jobs that roll out (job-completed), default none -> CircleciJobs
  SERVICE_TEMPLATE               default {reponame}                               -> ServiceTemplate
  IMAGE_TEMPLATE                 default {org}/{reponame}                         -> ImageTemplate
  BRANCH_ENVIRONMENTS            e.g. main=prod,release/*=staging                 -> BranchEnvironments
  DEFAULT_ENVIRONMENT            default dev                                      -> DefaultEnvironment
  DEFAULT_ORG                    org when the orb's api_link has none             -> DefaultOrg
  LOG_RETENTION_DAYS             default 90                                       -> LogRetentionDays
  LOG_LEVEL                      RUST_LOG filter, default info                    -> LogLevel
  SAM_S3_BUCKET                  artifact bucket (default: SAM's managed bucket, --resolve-s3)

Secrets never go into these settings: only the ARNs of Secrets Manager secrets do.
EOF
}

die() { echo "deploy.sh: $*" >&2; exit 1; }

env_file="" no_build=0 dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --env-file) [[ $# -ge 2 ]] || die "--env-file needs a FILE"; env_file="$2"; shift 2 ;;
    --stack-name) [[ $# -ge 2 ]] || die "--stack-name needs a NAME"; STACK_NAME="$2"; shift 2 ;;
    --region) [[ $# -ge 2 ]] || die "--region needs a REGION"; AWS_REGION="$2"; shift 2 ;;
    --no-build) no_build=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    *) echo "deploy.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -n "$env_file" ]]; then
  [[ -f "$env_file" ]] || die "--env-file '$env_file' does not exist"
  set -a
  # shellcheck disable=SC1090
  source "$env_file"
  set +a
fi

# A relative PORT_RULES_FILE is the caller's, not the repository root's.
if [[ -n "${PORT_RULES_FILE:-}" && "$PORT_RULES_FILE" != /* ]]; then
  PORT_RULES_FILE="$PWD/$PORT_RULES_FILE"
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Environment variable -> template parameter.
params=(
  STAGE_NAME:StageName
  INTAKE_TOKEN_SECRET_ARN:IntakeTokenSecretArn
  CIRCLECI_WEBHOOK_SECRET_ARN:CircleciWebhookSecretArn
  CIRCLECI_WORKFLOWS:CircleciWorkflows
  CIRCLECI_JOBS:CircleciJobs
  SERVICE_TEMPLATE:ServiceTemplate
  IMAGE_TEMPLATE:ImageTemplate
  BRANCH_ENVIRONMENTS:BranchEnvironments
  DEFAULT_ENVIRONMENT:DefaultEnvironment
  DEFAULT_ORG:DefaultOrg
  SUBNETS:Subnets
  SECURITY_GROUPS:SecurityGroups
  ASSIGN_PUBLIC_IP:AssignPublicIp
  TASK_IMAGE_URI:TaskImageUri
  TASK_IMAGE_REPOSITORY_NAME:TaskImageRepositoryName
  TASK_CPU:TaskCpu
  TASK_MEMORY:TaskMemory
  GITOPS_REPO_URL:GitopsRepoUrl
  GITOPS_BASE_BRANCH:GitopsBaseBranch
  OVERLAY_PATH_TEMPLATE:OverlayPathTemplate
  GITHUB_API_URL:GithubApiUrl
  GIT_AUTHOR_NAME:GitAuthorName
  GIT_AUTHOR_EMAIL:GitAuthorEmail
  GITOPS_REVIEWERS:GitopsReviewers
  GITOPS_TEAM_REVIEWERS:GitopsTeamReviewers
  GITOPS_LABELS:GitopsLabels
  GITOPS_CLONE:GitopsClone
  RECORD_BASE_URL:RecordBaseUrl
  GITHUB_TOKEN_SECRET_ARN:GithubTokenSecretArn
  PORT_CLIENT_ID_SECRET_ARN:PortClientIdSecretArn
  PORT_CLIENT_SECRET_SECRET_ARN:PortClientSecretSecretArn
  SLACK_WEBHOOK_URL_SECRET_ARN:SlackWebhookUrlSecretArn
  AUDIT_TOKEN_SECRET_ARN:AuditTokenSecretArn
  ADMIN_TOKEN_SECRET_ARN:AdminTokenSecretArn
  PORT_API_URL:PortApiUrl
  EXEC_COMMANDS_DIR:ExecCommandsDir
  PORT_RULES:PortRules
  PORT_KAFKA_BOOTSTRAP_SERVERS:PortKafkaBootstrapServers
  PORT_KAFKA_TOPIC:PortKafkaTopic
  PORT_KAFKA_CONSUMER_GROUP_ID:PortKafkaConsumerGroupId
  PORT_KAFKA_BATCH_SIZE:PortKafkaBatchSize
  PORT_KAFKA_MAX_RETRY_ATTEMPTS:PortKafkaMaxRetryAttempts
  PORT_KAFKA_SASL_SECRET_ARN:PortKafkaSaslSecretArn
  EVENTS_INSTANCE_REBOOTS:EventsInstanceReboots
  EVENTS_INSTANCE_STATES:EventsInstanceStates
  SCHEDULE1_NAME:Schedule1Name
  SCHEDULE1_EXPRESSION:Schedule1Expression
  SCHEDULE1_INPUT:Schedule1Input
  SCHEDULE2_NAME:Schedule2Name
  SCHEDULE2_EXPRESSION:Schedule2Expression
  SCHEDULE2_INPUT:Schedule2Input
  SCHEDULE_TIMEZONE:ScheduleTimezone
  INSTANCE_OPT_IN_TAG_VALUE:InstanceOptInTagValue
  LOG_RETENTION_DAYS:LogRetentionDays
  LOG_LEVEL:LogLevel
)
required=(STACK_NAME SUBNETS SECURITY_GROUPS TASK_IMAGE_URI GITOPS_REPO_URL GITHUB_TOKEN_SECRET_ARN INTAKE_TOKEN_SECRET_ARN)

# The rules travel as a parameter (the functions' RULES variable): a Lambda ships no rules file.
if [[ -n "${PORT_RULES_FILE:-}" ]]; then
  [[ -z "${PORT_RULES+set}" ]] || die "set PORT_RULES_FILE or PORT_RULES, not both"
  [[ -f "$PORT_RULES_FILE" ]] || die "PORT_RULES_FILE '$PORT_RULES_FILE' does not exist"
  PORT_RULES="$(cat "$PORT_RULES_FILE")"
fi
rules_bytes="$(printf '%s' "${PORT_RULES:-}" | wc -c)"
# Lambda's 4 KB counts every variable's name and value; the api function's others take about
# 1 KB with real ARNs, so 2800 bytes leaves a margin.
if [[ $rules_bytes -gt 2800 ]]; then
  die "the rules are $rules_bytes bytes; at most 2800 fit beside the other variables in Lambda's 4 KB (leave the comments out)"
fi

missing=()
for var in "${required[@]}"; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  die "missing required setting(s): ${missing[*]} (see --help)"
fi

# Values that must be ARNs, not secrets pasted by mistake.
secret_arn_re='^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$'
for var in GITHUB_TOKEN_SECRET_ARN INTAKE_TOKEN_SECRET_ARN CIRCLECI_WEBHOOK_SECRET_ARN PORT_CLIENT_ID_SECRET_ARN PORT_CLIENT_SECRET_SECRET_ARN SLACK_WEBHOOK_URL_SECRET_ARN AUDIT_TOKEN_SECRET_ARN ADMIN_TOKEN_SECRET_ARN PORT_KAFKA_SASL_SECRET_ARN; do
  value="${!var:-}"
  if [[ -n "$value" && ! "$value" =~ $secret_arn_re ]]; then
    die "$var must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME); the secret value itself never goes into a setting"
  fi
done
# Settings that only work together (the template's Rules check the same at deploy time).
if [[ -n "${PORT_KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
  for var in PORT_KAFKA_TOPIC PORT_KAFKA_SASL_SECRET_ARN PORT_RULES; do
    [[ -n "${!var:-}" ]] || die "PORT_KAFKA_BOOTSTRAP_SERVERS needs $var"
  done
  [[ "$PORT_KAFKA_TOPIC" =~ ^[A-Za-z0-9_-]+[.]change[.]log$ ]] || die "PORT_KAFKA_TOPIC must be <ORG_ID>.change.log"
fi
if [[ -n "${PORT_CLIENT_SECRET_SECRET_ARN:-}" && -z "${PORT_RULES:-}" ]]; then
  die "PORT_CLIENT_SECRET_SECRET_ARN enables POST /webhooks/port, which needs PORT_RULES or PORT_RULES_FILE"
fi
case "${ASSIGN_PUBLIC_IP:-false}" in true | false) ;; *) die "ASSIGN_PUBLIC_IP must be true or false" ;; esac
# Unless told otherwise, the execution role pulls only from the task image's own ECR repository.
ecr_re='^[0-9]{12}[.]dkr[.]ecr[.][a-z0-9-]+[.]amazonaws[.]com([.]cn)?/([^@]+)(@sha256:[0-9a-f]{64})?$'
if [[ -z "${TASK_IMAGE_REPOSITORY_NAME+set}" && "$TASK_IMAGE_URI" =~ $ecr_re ]]; then
  repo="${BASH_REMATCH[2]}"
  # A tag follows the last ':' of the last path segment.
  if [[ "${repo##*/}" == *:* ]]; then repo="${repo%:*}"; fi
  TASK_IMAGE_REPOSITORY_NAME="$repo"
  echo "deploy.sh: the task execution role may pull only from ECR repository '$repo' (set TASK_IMAGE_REPOSITORY_NAME to change it)" >&2
fi
[[ "$STACK_NAME" =~ ^[A-Za-z][A-Za-z0-9-]{0,127}$ ]] || die "STACK_NAME '$STACK_NAME' is not a valid stack name (letters, digits, hyphens; starts with a letter)"
[[ "$GITOPS_REPO_URL" != *@* ]] || die "GITOPS_REPO_URL must not contain credentials (user@ or token@); the task authenticates with GITHUB_TOKEN"

# tool NAME: the .venv copy when present, else the one on PATH.
tool() {
  if [[ -x "$root/.venv/bin/$1" ]]; then
    echo "$root/.venv/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    die "'$1' not found in .venv/bin or PATH (run scripts/setup.sh, or pip install -r requirements-dev.txt)"
  fi
}
python="$(tool python3)"
sam="$(tool sam)"
export SAM_CLI_TELEMETRY=0

# The parameters, as a YAML (JSON) file for --parameter-overrides file://…: no shell quoting
# problems with spaces, commas, braces or '='. Only settings that are set are passed.
params_file="$(mktemp --suffix=.yaml)"
trap 'rm -f "$params_file"' EXIT
pairs=()
for entry in "${params[@]}"; do
  var="${entry%%:*}" key="${entry#*:}"
  if [[ -n "${!var+set}" ]]; then
    pairs+=("$key" "${!var}")
  fi
done
"$python" - "$params_file" "${pairs[@]}" <<'PY'
import json, sys
out, rest = sys.argv[1], sys.argv[2:]
params = dict(zip(rest[0::2], rest[1::2]))
with open(out, "w", encoding="utf-8") as f:
    json.dump(params, f, indent=1)
PY

region_args=()
[[ -n "${AWS_REGION:-}" ]] && region_args=(--region "$AWS_REGION")
s3_args=(--resolve-s3)
[[ -n "${SAM_S3_BUCKET:-}" ]] && s3_args=(--s3-bucket "$SAM_S3_BUCKET")

deploy_cmd=(
  "$sam" deploy
  --stack-name "$STACK_NAME"
  "${region_args[@]}"
  "${s3_args[@]}"
  --s3-prefix "$STACK_NAME"
  --capabilities CAPABILITY_IAM
  --no-confirm-changeset
  --no-fail-on-empty-changeset
  --parameter-overrides "file://$params_file"
  --tags "app=gitops-orchestrator"
)

echo "deploy.sh: stack $STACK_NAME${AWS_REGION:+ in $AWS_REGION}; parameters:"
"$python" -c 'import json,sys; [print(f"  {k} = {v!r}") for k, v in json.load(open(sys.argv[1])).items()]' "$params_file"

if [[ $dry_run -eq 1 ]]; then
  echo "deploy.sh: --dry-run: would run:"
  [[ $no_build -eq 1 ]] || echo "  scripts/sam-build.sh"
  printf ' %q' "${deploy_cmd[@]}"; echo
  exit 0
fi

if [[ $no_build -eq 0 ]]; then
  "$root/scripts/sam-build.sh"
else
  [[ -f .aws-sam/build/template.yaml ]] || die "--no-build: .aws-sam/build/template.yaml does not exist; run scripts/sam-build.sh first"
fi

echo "deploy.sh: sam deploy (stack $STACK_NAME)"
"${deploy_cmd[@]}"

echo "deploy.sh: outputs"
outputs_json="$("$sam" list stack-outputs --stack-name "$STACK_NAME" "${region_args[@]}" --output json)"
webhook_url="$("$python" -c '
import json, sys
for o in json.load(sys.stdin):
    if o.get("OutputKey") == "WebhookUrl":
        print(o.get("OutputValue", ""))
' <<<"$outputs_json")"
"$python" -c '
import json, sys
for o in json.load(sys.stdin):
    print("  %s: %s" % (o.get("OutputKey"), o.get("OutputValue")))
' <<<"$outputs_json"
[[ -n "$webhook_url" ]] || die "the stack has no WebhookUrl output"
echo
echo "Webhook URL: $webhook_url"
echo "CircleCI orb endpoint: store '$webhook_url?token=<intake token>' in a CircleCI secret variable (docs/deploy.md)."
