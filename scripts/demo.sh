#!/usr/bin/env bash
# The whole flow on one machine, no AWS account and no GitHub: a CircleCI build event becomes a
# signed commit on update-image/dev/circleci-samples in a local gitops repository.
#
#   1. creates a sample gitops repository (bare repo + working clone) with
#      kustomize/circleci-samples/{base,overlays/dev,overlays/prod};
#   2. builds and starts the local server on a free port, GITOPS_REPO_URL pointing at the bare
#      repository, with a fresh DATA_DIR;
#   3. posts tests/fixtures/circleci-orb/success.json;
#   4. waits (bounded) until the record leaves dispatched/running;
#   5. prints the record and `git diff main..update-image/dev/circleci-samples`: one line, the
#      app's tag (the overlay's comments, entry order, indentation and quoting are kept).
# The server is stopped on exit. Needs cargo, git and curl (or python3).
#
# Settings (environment): DEMO_DIR (default: a new temporary directory, kept afterwards),
# DEMO_TIMEOUT (seconds to wait for the task, default 120), CARGO_TARGET_DIR.
# Usage: scripts/demo.sh [--help]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "demo.sh: unexpected argument '$1' (see --help)" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fixture="$root/tests/fixtures/circleci-orb/success.json"
timeout_s="${DEMO_TIMEOUT:-120}"
service="circleci-samples"
image="eddiewebb/circleci-samples"
old_tag="0b5e1f3c9d2a4e6f8a1b3c5d7e9f0a2b4c6d8e0f"
branch="update-image/dev/$service"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "demo.sh: $*" >&2; exit 1; }
for tool in cargo git; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
command -v curl >/dev/null || command -v python3 >/dev/null || die "curl or python3 is required"

# HTTP without surprises: curl when present, else python3's urllib. Prints the body.
http() { # METHOD URL [FILE]
  if command -v curl >/dev/null; then
    if [[ -n "${3:-}" ]]; then
      curl -sS --fail-with-body -X "$1" -H 'Content-Type: application/json' --data-binary "@$3" "$2"
    else
      curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $audit" "$2"
    fi
  else
    python3 - "$@" <<'PY'
import os, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else None
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["DEMO_AUDIT_TOKEN"]}
req = urllib.request.Request(url, data=data, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode()); sys.exit(22)
PY
  fi
}
json_field() { # NAME: the first string value of "NAME" in the JSON on stdin (top-level fields
  # come before the payload in a record, so the first match is the record's own)
  grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | sed 's/^"[^"]*":"//; s/"$//'
}
pretty() {
  if command -v python3 >/dev/null; then python3 -m json.tool; else cat; echo; fi
}

demo="${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gitops-demo.XXXXXX")}"
mkdir -p "$demo"
demo="$(cd "$demo" && pwd)"
rm -rf "$demo/gitops.git" "$demo/gitops" "$demo/data"

# git for the sample repository only: no host configuration, a fixed identity.
g() {
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    GIT_AUTHOR_NAME="Demo Platform Team" GIT_AUTHOR_EMAIL="platform@example.com" \
    GIT_COMMITTER_NAME="Demo Platform Team" GIT_COMMITTER_EMAIL="platform@example.com" \
    git -c init.defaultBranch=main "$@"
}

say "1/5 sample gitops repository in $demo"
g init --quiet --bare "$demo/gitops.git"
g init --quiet "$demo/gitops"
app="$demo/gitops/kustomize/$service"
mkdir -p "$app/base" "$app/overlays/dev" "$app/overlays/prod"
cat >"$app/base/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
EOF
cat >"$app/base/deployment.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $service
  labels:
    app: $service
spec:
  replicas: 1
  selector:
    matchLabels:
      app: $service
  template:
    metadata:
      labels:
        app: $service
    spec:
      containers:
      - name: app
        image: $image:$old_tag
        ports:
        - containerPort: 8080
      - name: proxy
        image: envoyproxy/envoy:v1.30.0
EOF
cat >"$app/overlays/dev/kustomization.yaml" <<EOF
# Dev overlay of $service. The image tag is bumped by the gitops orchestrator.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $service-dev
resources:
  - ../../base
images:
  # the app image, bumped by CI
  - name: $image
    newTag: "$old_tag"   # keep quoted
  # the sidecar, bumped by hand
  - name: envoyproxy/envoy
    newTag: v1.31.0
# Keep one replica in dev.
replicas:
  - name: $service
    count: 1
EOF
cat >"$app/overlays/prod/kustomization.yaml" <<EOF
# Prod overlay: images come from the registry mirror.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $service-prod
resources:
- ../../base
images:
- name: $image
  newName: registry.example.com/mirror/$service
  newTag: $old_tag
EOF
g -C "$demo/gitops" add .
g -C "$demo/gitops" commit --quiet -m "Sample gitops repository"
g -C "$demo/gitops" remote add origin "$demo/gitops.git"
g -C "$demo/gitops" push --quiet origin HEAD:refs/heads/main
echo "bare repository: $demo/gitops.git (working clone: $demo/gitops)" >&2

say "2/5 building and starting the local server"
cd "$root"
cargo build -p orchestrator -p gitops-task --bin orchestrator --bin gitops-task
target="${CARGO_TARGET_DIR:-$root/target}/debug"
log="$demo/server.log"
# The task inherits the server's environment: point it at the sample repository, and make sure
# no GitHub settings from this shell make it try to open a real pull request.
# The demo reads its record with an audit token of its own (the audit routes are closed without one).
audit="demo-audit-$RANDOM$RANDOM"
export DEMO_AUDIT_TOKEN="$audit"
env -u GITHUB_API_URL -u GITHUB_TOKEN -u GITHUB_REPOSITORY -u INTAKE_TOKEN -u ADMIN_TOKEN \
  AUDIT_TOKEN="$audit" GITOPS_REPO_URL="$demo/gitops.git" GITOPS_BASE_BRANCH=main DATA_DIR="$demo/data" PORT=0 \
  "$target/orchestrator" serve --task-binary "$target/gitops-task" >"$log" 2>&1 &
server=$!
cleanup() {
  if kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base_url=""
for _ in $(seq 1 600); do # up to 60 s (built above; starting takes milliseconds)
  base_url="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$log" | head -n 1)"
  [[ -n "$base_url" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; die "the server exited"; }
  sleep 0.1
done
[[ -n "$base_url" ]] || { cat "$log" >&2; die "the server did not start within 60 s"; }
echo "server: $base_url (log: $log)" >&2

say "3/5 posting $(basename "$fixture") (a CircleCI orb build event)"
answer="$(http POST "$base_url/pullrequests" "$fixture")" || { echo "$answer" >&2; die "the webhook was refused"; }
id="$(printf '%s' "$answer" | json_field id)"
[[ -n "$id" ]] || die "no record id in the answer: $answer"
echo "record: $id" >&2

say "4/5 waiting for the task (at most ${timeout_s}s)"
status="" last="" record=""
deadline=$((SECONDS + timeout_s))
while :; do
  record="$(http GET "$base_url/pullrequests/$id")" || die "cannot read record $id"
  status="$(printf '%s' "$record" | json_field status)"
  if [[ "$status" != "$last" ]]; then
    echo "  $(date +%H:%M:%S) status: $status" >&2
    last="$status"
  fi
  case "$status" in
    received | dispatched | running) ;;
    *) break ;;
  esac
  if ((SECONDS >= deadline)); then
    echo "task log ($demo/data/tasks/$id.log):" >&2
    tail -n 20 "$demo/data/tasks/$id.log" >&2 || true
    die "record still '$status' after ${timeout_s}s"
  fi
  sleep 0.5
done

say "5/5 the record"
printf '%s' "$record" | pretty
if [[ "$status" != "succeeded" ]]; then
  echo "task log ($demo/data/tasks/$id.log):" >&2
  tail -n 20 "$demo/data/tasks/$id.log" >&2 || true
  die "the job ended '$status'"
fi
echo
# The edit touches only the line that must change: the app's tag (its quotes and comment kept).
changed="$(g --git-dir "$demo/gitops.git" diff --numstat "main..$branch" |
  awk '{a += $1; d += $2} END {print a "+/" d "-"}')"
echo "--- git diff main..$branch ($changed lines)"
g --git-dir "$demo/gitops.git" --no-pager diff "main..$branch"
echo "--- commit"
g --git-dir "$demo/gitops.git" --no-pager log -1 --format='%h %an <%ae>%n%n%B' "$branch"
echo "Demo files are in $demo (remove with: rm -rf '$demo')." >&2
