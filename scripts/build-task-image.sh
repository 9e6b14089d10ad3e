#!/usr/bin/env bash
# Builds the Fargate task image (task-image/Dockerfile) with docker buildx, for linux/arm64 by
# default (Fargate RuntimePlatform CpuArchitecture ARM64). Run from anywhere; the build context is
# the repository root, filtered by task-image/Dockerfile.dockerignore.
#
# Usage: scripts/build-task-image.sh [--tag TAG] [--repository REPO] [--platform P] [--push] [--help]
#
# Options (each has an environment variable):
#   --repository REPO  IMAGE_REPOSITORY  image name or ECR URI (default: gitops-task)
#   --tag TAG          IMAGE_TAG         image tag (default: the current commit, short, with
#                                        "-dirty" when the work tree has changes; "dev" outside git)
#   --platform P       PLATFORM          buildx platform (default: linux/arm64)
#   --push             PUSH=1            push to the registry instead of loading into the local
#                                        engine (log in first, e.g. `aws ecr get-login-password |
#                                        docker login --username AWS --password-stdin <registry>`)
#   -h, --help                           this text
#
# Needs Docker with buildx (BuildKit). Building for arm64 on an x86 host needs no emulation: the
# Dockerfile cross-compiles.
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-task-image.sh: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repository="${IMAGE_REPOSITORY:-gitops-task}"
tag="${IMAGE_TAG:-}"
platform="${PLATFORM:-linux/arm64}"
push="${PUSH:-0}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; tag="$2"; shift 2 ;;
    --repository) [[ $# -ge 2 ]] || die "--repository needs a value"; repository="$2"; shift 2 ;;
    --platform) [[ $# -ge 2 ]] || die "--platform needs a value"; platform="$2"; shift 2 ;;
    --push) push=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [[ -z "$tag" ]]; then
  if sha="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null)"; then
    tag="$sha"
    [[ -z "$(git -C "$root" status --porcelain 2>/dev/null)" ]] || tag="$sha-dirty"
  else
    tag="dev"
  fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"

command -v docker >/dev/null || die "docker is not installed (this script needs Docker with buildx)"
docker buildx version >/dev/null 2>&1 || die "docker buildx is not available (install the buildx plugin)"

output=(--load)
[[ "$push" == "1" ]] && output=(--push)

image="$repository:$tag"
echo "build-task-image.sh: building $image for $platform" >&2
set -x
docker buildx build \
  --platform "$platform" \
  --file "$root/task-image/Dockerfile" \
  --tag "$image" \
  --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label "org.opencontainers.image.source=gitops-orchestrator/task-image" \
  "${output[@]}" \
  "$root"
