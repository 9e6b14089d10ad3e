#!/usr/bin/env bash
# POST a webhook fixture to the orchestrator, authenticated with INTAKE_TOKEN, and print the
# answer. The token is never printed and never appears in a process's arguments.
set -euo pipefail

DEFAULT_FIXTURE="tests/fixtures/circleci-orb/success.json"
DEFAULT_URL="http://127.0.0.1:3000/pullrequests"

usage() {
  cat <<EOF
Usage: scripts/send-webhook.sh [FIXTURE] [--url URL] [--bearer] [--header 'Name: value']... [--help]

POSTs FIXTURE (default: $DEFAULT_FIXTURE) as application/json to the orchestrator
and prints the HTTP status and the response body. Exits 1 on a status of 400 or more.

The intake token is appended to the URL as ?token=<URL-encoded token>, the way the CircleCI
orb sends it (it can send no header). It is passed to curl through its standard input, so it
shows in no process list, and it is never printed.

Arguments and options:
  FIXTURE            JSON file to send (raw bytes, unchanged)
  --url URL          same as WEBHOOK_URL
  --bearer           send the token as "Authorization: Bearer" instead of ?token=
  --header 'N: v'    an extra request header (repeatable), e.g. for signed webhooks
  -h, --help         this text

Settings (environment variables):
  WEBHOOK_URL    endpoint (default: $DEFAULT_URL, the local server;
                 deployed: the stack's WebhookUrl output)
  INTAKE_TOKEN   the intake token; when unset the request goes without one (the local server
                 accepts that only when it runs without INTAKE_TOKEN itself)
EOF
}

die() { echo "send-webhook.sh: $*" >&2; exit 1; }

fixture="" bearer=0 url="${WEBHOOK_URL:-$DEFAULT_URL}"
headers=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --url) [[ $# -ge 2 && -n "$2" ]] || die "--url needs a URL"; url="$2"; shift 2 ;;
    --bearer) bearer=1; shift ;;
    --header) [[ $# -ge 2 && "$2" == *:* ]] || die "--header needs 'Name: value'"; headers+=("$2"); shift 2 ;;
    -*) echo "send-webhook.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) [[ -z "$fixture" ]] || die "only one FIXTURE may be given"; fixture="$1"; shift ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "$fixture" ]]; then
  fixture="$root/$DEFAULT_FIXTURE"
fi
[[ -f "$fixture" ]] || die "fixture '$fixture' does not exist"
[[ "$url" =~ ^https?:// ]] || die "WEBHOOK_URL must start with http:// or https:// (got '$url')"
[[ "$url" != *token=* ]] || die "WEBHOOK_URL already holds a token; give the bare URL and set INTAKE_TOKEN"
command -v curl >/dev/null 2>&1 || die "curl is not installed"

# url-encode: reads the value on stdin (never in argv), prints it percent-encoded.
urlencode() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))'
  elif command -v jq >/dev/null 2>&1; then
    jq -sRr @uri
  else
    die "python3 or jq is needed to URL-encode the token"
  fi
}

# curl reads its URL and headers from a config on stdin: nothing secret in argv.
config="url = \"$url"
token_note="no token (INTAKE_TOKEN is not set)"
if [[ -n "${INTAKE_TOKEN:-}" ]]; then
  if [[ $bearer -eq 1 ]]; then
    [[ "$INTAKE_TOKEN" != *[$'\r\n"\\']* ]] || die "INTAKE_TOKEN contains characters that cannot go in a header"
    headers+=("Authorization: Bearer $INTAKE_TOKEN")
    token_note="token in Authorization: Bearer"
  else
    encoded="$(printf '%s' "$INTAKE_TOKEN" | urlencode)"
    if [[ "$url" == *\?* ]]; then config+="&token=$encoded"; else config+="?token=$encoded"; fi
    token_note="token in ?token= (URL-encoded, not shown)"
  fi
fi
config+=$'"\n'
for h in "${headers[@]}"; do
  h="${h//\\/\\\\}"
  config+="header = \"${h//\"/\\\"}\""$'\n'
done

echo "POST $url  ($token_note)"
echo "body: $fixture ($(wc -c <"$fixture") bytes)"
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT
status="$(printf '%s' "$config" | curl --silent --show-error --config - \
  --request POST \
  --header 'Content-Type: application/json' \
  --data-binary "@$fixture" \
  --output "$body_file" \
  --write-out '%{http_code}')" || die "the request failed (is the server running at $url?)"

echo "HTTP $status"
cat "$body_file"
[[ -s "$body_file" ]] && echo
[[ "$status" -lt 400 ]] || exit 1
