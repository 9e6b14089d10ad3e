"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Signing. schemathesis cannot compute the webhooks' HMAC signatures, so schemathesis.sh gives the
signature and timestamp headers (security schemes circleciSignature, portSignature, portTimestamp)
the api key PLACEHOLDER. Before each call, `before_call` serialises the body itself, sends exactly
those bytes, and replaces the placeholders with the real signature of them. A request on which
schemathesis removed or changed a placeholder (its ignored_auth check) is left unsigned, so it
still gets its 401. The signed webhook endpoints are thus exercised past their signature check.

Refusals. `authenticated_requests_get_past_auth` is a check: a schema-valid request that carries
valid credentials (verified here independently: the bearer token, or the signature recomputed from
the bytes sent) must not be answered 401, nor 404 unless it names a record that does not exist
(`not_found` on /pullrequests/{id}...): a router or auth layer that refused everything would
otherwise pass as "documented statuses".

Environment: SCHEMATHESIS_INTAKE_TOKEN, SCHEMATHESIS_ADMIN_TOKEN, SCHEMATHESIS_CIRCLECI_SECRET,
SCHEMATHESIS_PORT_SECRET.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time
from urllib.parse import parse_qs, urlparse

import schemathesis
from schemathesis import GenerationMode

PLACEHOLDER = "sign-me"

_ID_PATH = re.compile(r"^/pullrequests/[^/]+(/dispatch)?$")


def _secret(name):
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"schemathesis_hooks: {name} is not set")
    return value


def _circleci_signature(body):
    key = _secret("SCHEMATHESIS_CIRCLECI_SECRET").encode()
    return "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _port_signature(timestamp, body):
    key = _secret("SCHEMATHESIS_PORT_SECRET").encode()
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _header(headers, name):
    """A header of `headers` (any case), or None."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _set_header(headers, name, value):
    for key in [k for k in headers if k.lower() == name]:
        del headers[key]
    headers[name] = value


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if path not in ("/webhooks/circleci", "/webhooks/port", "/webhooks/port/runs") or case.headers is None:
        return
    headers = case.headers
    if path == "/webhooks/circleci":
        if _header(headers, "circleci-signature") != PLACEHOLDER:
            return
    elif not (
        _header(headers, "x-port-signature") == PLACEHOLDER
        and _header(headers, "x-port-timestamp") == PLACEHOLDER
    ):
        return
    # The bytes to sign are the bytes sent: serialise the JSON body here and pass it as `data`.
    if isinstance(case.body, (dict, list, str, int, float, bool)) or case.body is None:
        body = json.dumps(case.body).encode()
        kwargs["data"] = body
    else:
        # No body (NotSet) or one that is not JSON: sign the empty body schemathesis sends.
        body = b""
    if path == "/webhooks/circleci":
        _set_header(headers, "circleci-signature", _circleci_signature(body))
    else:
        timestamp = str(int(time.time()))
        _set_header(headers, "x-port-timestamp", timestamp)
        _set_header(headers, "x-port-signature", _port_signature(timestamp, body))


def _authenticated(request):
    """Whether `request` (as sent) carries valid credentials for its endpoint."""
    url = urlparse(request.url)
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    headers = request.headers
    if url.path == "/webhooks/circleci":
        return _header(headers, "circleci-signature") == _circleci_signature(body)
    if url.path in ("/webhooks/port", "/webhooks/port/runs"):
        timestamp = _header(headers, "x-port-timestamp") or ""
        return _header(headers, "x-port-signature") == _port_signature(timestamp, body)
    if url.path == "/openapi.json":
        return True
    if request.method == "POST" and url.path in ("/pullrequests", "/events"):
        token = _secret("SCHEMATHESIS_INTAKE_TOKEN")
        return (
            _header(headers, "authorization") == f"Bearer {token}"
            or parse_qs(url.query).get("token") == [token]
        )
    # The audit routes: the admin token, as Bearer or as the Basic password (never ?token=).
    admin = _secret("SCHEMATHESIS_ADMIN_TOKEN")
    auth = _header(headers, "authorization") or ""
    if auth == f"Bearer {admin}":
        return True
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return password == admin
    return False


@schemathesis.check
def authenticated_requests_get_past_auth(ctx, response, case):
    if case.meta is not None and case.meta.generation.mode != GenerationMode.POSITIVE:
        return None
    status = response.status_code
    if status not in (401, 404) or not _authenticated(response.request):
        return None
    try:
        code = json.loads(response.text)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    path = urlparse(response.request.url).path
    if status == 404 and code == "not_found" and _ID_PATH.match(path):
        return None
    raise AssertionError(
        f"{status} ({code}) to an authenticated, schema-valid {response.request.method} {path}"
    )
