#!/usr/bin/env bash
# `sam build` only: compiles the Lambda binaries (api, lifecycle, port-kafka, events) for arm64 with Cargo Lambda and
# writes .aws-sam/build/. Installs the missing Rust target and Cargo Lambda first.
set -euo pipefail

CARGO_LAMBDA_VERSION="1.9.2"
RUST_TARGET="aarch64-unknown-linux-gnu"

usage() {
  cat <<EOF
Usage: scripts/sam-build.sh [--debug] [RESOURCE_ID] [--help]

Runs \`sam build\` on template.yaml (BuildMethod rust-cargolambda: SAM runs
\`cargo lambda build --release --arm64 --bin <Binary>\` for each function), then prints the
size of each .aws-sam/build/*/bootstrap and the wall time. No Docker needed.

Arguments:
  RESOURCE_ID     build only this function (e.g. ApiFunction; \`sam build\` takes one);
                  default: all
  --debug         debug build (SAM_BUILD_MODE=debug): faster, much larger binaries
  -h, --help      this text

Prerequisites, installed when missing:
  - Rust target $RUST_TARGET (rustup target add; needs rustup)
  - cargo-lambda $CARGO_LAMBDA_VERSION (PyPI package cargo-lambda, with zig for cross-linking),
    installed into .venv when .venv exists; otherwise install it yourself:
    pip install cargo-lambda==$CARGO_LAMBDA_VERSION
  - sam (aws-sam-cli, from requirements-dev.txt: scripts/setup.sh)

Settings (environment variables):
  TEMPLATE          template to build (default: template.yaml)
  SAM_BUILD_MODE    release (default) or debug; --debug sets debug
  CARGO_BUILD_JOBS  parallel rustc jobs (default: all cores)

A release build compiles the AWS SDK for arm64 and takes many minutes on a small machine;
later builds reuse target/. Tools come from .venv/bin/ when present, else from PATH.
EOF
}

die() { echo "sam-build.sh: $*" >&2; exit 1; }

resources=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --debug) export SAM_BUILD_MODE=debug; shift ;;
    -*) echo "sam-build.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) resources+=("$1"); shift ;;
  esac
done
# `sam build` takes one resource id: say so here rather than through its usage text.
[[ ${#resources[@]} -le 1 ]] || { echo "sam-build.sh: one RESOURCE_ID at a time (sam build takes one), or none for all" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
template="${TEMPLATE:-template.yaml}"
[[ -f "$template" ]] || die "TEMPLATE '$template' does not exist"

# .venv/bin first on PATH: sam, and cargo finds the cargo-lambda subcommand there.
if [[ -d "$root/.venv/bin" ]]; then
  export PATH="$root/.venv/bin:$PATH"
fi
export SAM_CLI_TELEMETRY=0

command -v sam >/dev/null 2>&1 || die "sam not found in .venv/bin or PATH (run scripts/setup.sh, or pip install -r requirements-dev.txt)"
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"

if ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
  command -v rustup >/dev/null 2>&1 || die "rustup not found: cannot add the Rust target $RUST_TARGET"
  echo "sam-build.sh: adding Rust target $RUST_TARGET"
  rustup target add "$RUST_TARGET"
fi

if ! cargo lambda --version >/dev/null 2>&1; then
  if [[ -x "$root/.venv/bin/pip" ]]; then
    echo "sam-build.sh: installing cargo-lambda==$CARGO_LAMBDA_VERSION into .venv"
    "$root/.venv/bin/pip" install --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION"
  else
    die "cargo-lambda not found: pip install cargo-lambda==$CARGO_LAMBDA_VERSION (or run scripts/setup.sh to create .venv, then rerun)"
  fi
  cargo lambda --version >/dev/null 2>&1 || die "cargo-lambda is still not runnable after installing it"
fi

# The Lambda packages are built for size: opt-level "z" and fat LTO (only here: the task and the
# local server keep the release profile's speed settings). Measured on arm64 (cargo lambda build,
# 2026-11-28): api zipped 4.34 MB with opt-level "s", 4.03 MB with "z" (docs/measurements.md).
# The functions wait on AWS, not on the CPU. Set either variable to override.
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-z}"
export CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-fat}"

echo "sam-build.sh: $(sam --version), $(cargo lambda --version), $(cargo --version)"
echo "sam-build.sh: mode ${SAM_BUILD_MODE:-release}; building ${resources[*]:-all functions} from $template"
start=$(date +%s)
sam build --template "$template" "${resources[@]}"
elapsed=$(( $(date +%s) - start ))

echo "sam-build.sh: built in $((elapsed / 60)) min $((elapsed % 60)) s"
shopt -s nullglob
for f in .aws-sam/build/*/bootstrap; do
  printf '  %-45s %8d bytes (%s)\n' "$f" "$(stat -c %s "$f")" "$(du -h "$f" | cut -f1)"
done
