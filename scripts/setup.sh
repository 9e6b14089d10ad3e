#!/usr/bin/env bash
# Installs what the tests and local tools need, idempotently:
#   - Python tools pinned in requirements-dev.txt (moto[server], cfn-lint, aws-sam-cli) into .venv
#   - rustfmt and clippy, if the toolchain lacks them
#   - kubectl (its built-in kustomize renders the overlays in the task-image tests), with apt-get
#     when missing; REQUIRE_KUBECTL=0 turns a kubectl that cannot be installed into a warning
#   - chromium and chromium-driver (Debian's), for the console's browser test, with apt-get when
#     missing; REQUIRE_BROWSER=0 turns a browser that cannot be installed into a warning
# Usage: scripts/setup.sh [--help]
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for tool in cargo git python3 curl; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' is required but not on PATH" >&2; exit 1; }
done

if command -v rustup >/dev/null; then
  installed="$(rustup component list --installed 2>/dev/null || true)"
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed" || rustup component add "$c"
  done
fi

stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing Python tools into .venv (requirements-dev.txt)"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi

# kubectl: the only check against real kustomize (`kubectl kustomize` renders). The tests require it
# under REQUIRE_KUBECTL=1 (scripts/test.sh's default).
if command -v kubectl >/dev/null && kubectl version --client >/dev/null 2>&1; then
  echo "setup: kubectl found: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
else
  echo "setup: kubectl not found: installing it with apt-get (package 'kubectl')"
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get install -y --no-install-recommends kubectl || {
      $sudo apt-get update && $sudo apt-get install -y --no-install-recommends kubectl
    } || true
  fi
  if ! command -v kubectl >/dev/null; then
    msg="setup: kubectl could not be installed (no apt-get, or apt has no candidate for 'kubectl').
  Add the Kubernetes apt repository (https://pkgs.k8s.io, see https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/)
  and run scripts/setup.sh again, or put any kubectl with kustomize v5 on PATH.
  To run the tests without the kustomize renders instead: REQUIRE_KUBECTL=0 scripts/test.sh (they are then listed as skipped)."
    echo "$msg" >&2
    [[ "${REQUIRE_KUBECTL:-1}" == 0 ]] || exit 1
  fi
fi

# Headless Chromium and its WebDriver: the console's browser test (functions/tests/console_browser.rs)
# requires them under REQUIRE_BROWSER=1 (scripts/test.sh's default).
if command -v chromedriver >/dev/null && chromedriver --version >/dev/null 2>&1; then
  echo "setup: chromedriver found: $(chromedriver --version 2>/dev/null | head -n1)"
else
  echo "setup: chromium / chromedriver not found: installing them with apt-get (packages 'chromium', 'chromium-driver')"
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get install -y --no-install-recommends chromium chromium-driver || {
      $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium chromium-driver
    } || true
  fi
  if ! command -v chromedriver >/dev/null; then
    echo "setup: chromium-driver could not be installed (no apt-get, or no candidate). Install Chromium and its
  chromedriver, or run the tests without the browser test: REQUIRE_BROWSER=0 scripts/test.sh (it is then listed as skipped)." >&2
    [[ "${REQUIRE_BROWSER:-1}" == 0 ]] || exit 1
  fi
fi
