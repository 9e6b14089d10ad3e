"""Measures the local server: process start to ready, and request latency per endpoint.

Usage: python bench_local.py <orchestrator binary> [--requests N]
Starts `orchestrator serve` on a free port with a throwaway DATA_DIR and TASK_BINARY=/bin/true
(this measures the API, not the task), then times N sequential POST /pullrequests (distinct
deliveries), N GET /pullrequests and N GET /pullrequests/{id}. Prints one figure per line.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "circleci-orb", "success.json")


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def report(name, ms):
    print(f"BENCH local {name}: n={len(ms)} p50={pct(ms, 50):.2f}ms p95={pct(ms, 95):.2f}ms p99={pct(ms, 99):.2f}ms mean={statistics.mean(ms):.2f}ms")
    print(f"FIGURE local server|{name}, one client, p50 / p99|{pct(ms, 50):.2f} / {pct(ms, 99):.2f} ms|{len(ms)} requests")


# The audit routes need a credential of their own (the intake is left open here).
AUDIT_TOKEN = "bench-audit-" + os.urandom(8).hex()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    payload = json.load(open(FIXTURE))
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, PORT="0", DATA_DIR=data, TASK_BINARY="/bin/true", RUST_LOG="warn",
                   AUDIT_TOKEN=AUDIT_TOKEN)
        env.pop("INTAKE_TOKEN", None)
        env.pop("ADMIN_TOKEN", None)
        audit = {"Authorization": f"Bearer {AUDIT_TOKEN}"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([args.binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline()
            ready = (time.perf_counter() - t0) * 1000
            host, port = line.strip().removeprefix("listening on http://").split(":")
            print(f"BENCH local start_to_ready_ms={ready:.1f}")
            print(f"FIGURE local server|process start -> listening|{ready:.1f} ms|")
            conn = http.client.HTTPConnection(host, int(port))
            post, lst, show = [], [], []
            ids = []
            for i in range(args.requests):
                payload["build_num"] = str(10_000 + i)
                body = json.dumps(payload)
                t = time.perf_counter()
                conn.request("POST", "/pullrequests", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data_ = r.read()
                post.append((time.perf_counter() - t) * 1000)
                assert r.status == 202, (r.status, data_)
                ids.append(json.loads(data_)["id"])
            for i in range(args.requests):
                t = time.perf_counter()
                conn.request("GET", "/pullrequests?limit=25", headers=audit)
                r = conn.getresponse(); r.read()
                lst.append((time.perf_counter() - t) * 1000)
                assert r.status == 200
            for i in range(args.requests):
                t = time.perf_counter()
                conn.request("GET", f"/pullrequests/{ids[i]}", headers=audit)
                r = conn.getresponse(); r.read()
                show.append((time.perf_counter() - t) * 1000)
                assert r.status == 200
            report("POST /pullrequests (record + launch)", post)
            report("GET /pullrequests?limit=25", lst)
            report("GET /pullrequests/{id}", show)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
