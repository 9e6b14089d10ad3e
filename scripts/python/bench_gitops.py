"""Webhook -> pull request opened, on a small and on a large gitops repository, beside the
seed's way (full clone + edit + commit + push) on the same repository, in one run.

Usage: python bench_gitops.py <orchestrator binary> <gitops-task binary> [--runs N] [--small-runs N]
       [--per-round N] [--work DIR]   (--runs: on the large repository, default 5; --small-runs: on
       the small one, default 30)

- The large repository is generated with `git fast-import` (10,000 files in 200 services, 5,000
  commits; cached in --work between runs) and served through git's server side (`file://`) with
  `uploadpack.allowFilter` on, as GitHub serves. The small one is the demo's (one service).
- A GitHub mock (http.server, on 127.0.0.1) answers the pull-request calls the task makes.
- `orchestrator serve` runs with the real task binary; each run posts a CircleCI orb delivery
  with a new tag and times POST -> branch pushed (the task's first GitHub call, which it makes
  right after the push: the mock notes when it arrives) and POST -> record `succeeded` with its
  pull request URL.
- The server runs without SSL_CERT_FILE / SSL_CERT_DIR, as the task image and Lambda do. The
  record is polled every 50 ms until the branch is pushed, then every 2 ms: the poll's own CPU
  stays off the task's way on a small machine.
- Each repository is timed with GITOPS_CLONE=partial (the default) and =shallow (every file at
  the tip, the previous behaviour), each run with a new tag.
- The three ways take turns, --per-round runs each (default 3), until each has --runs: a change
  in the machine's load during the run falls on all three alike.
- The seed's way: `git clone` (full), rewrite the tag, `git commit -s`, `git push`, timed: git
  alone, with no server, record or pull request around it.
Prints one BENCH line per figure and a table; asserts nothing about speed.
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "circleci-orb", "success.json")
SERVICE = "circleci-samples"
IMAGE = "eddiewebb/circleci-samples"
OLD_TAG = "0b5e1f3c9d2a4e6f8a1b3c5d7e9f0a2b4c6d8e0f"
OVERLAY = f"kustomize/{SERVICE}/overlays/dev/kustomization.yaml"
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def git(*args, cwd=None, stdin=None):
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


def service_files(service, image, tag):
    base = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deployment.yaml\n"
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {s}\nspec:\n  selector:\n"
        "    matchLabels:\n      app: {s}\n  template:\n    metadata:\n      labels:\n        app: {s}\n"
        "    spec:\n      containers:\n      - name: app\n        image: {i}:{t}\n"
    ).format(s=service, i=image, t=tag)
    overlay = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\n"
        "images:\n- name: {i}\n  newTag: {t}\n"
    ).format(i=image, t=tag)
    return {
        f"kustomize/{service}/base/kustomization.yaml": base,
        f"kustomize/{service}/base/deployment.yaml": deployment,
        f"kustomize/{service}/overlays/dev/kustomization.yaml": overlay,
    }


def fast_import_stream(files_total, commits):
    """A history of `commits` commits whose tip holds `files_total` files: the first commit adds
    every file, each later one rewrites a few (configuration churn, as a busy gitops repo has)."""
    out = []
    mark = 0
    blobs = {}

    def blob(text):
        nonlocal mark
        mark += 1
        data = text.encode()
        out.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))
        return mark

    files = dict(service_files(SERVICE, IMAGE, OLD_TAG))
    services = 200
    others = files_total - len(files)
    for n in range(others):
        s, f = n % services, n // services
        # Each file about 3 KiB of distinct text, as real manifests differ.
        body = "".join(f"# service {s} file {f} line {k}: {os.urandom(12).hex()}\n" for k in range(48))
        files[f"apps/svc-{s:03}/manifests/config-{f:03}.yaml"] = body
    ts = 1_700_000_000
    for c in range(commits):
        if c == 0:
            changed = files
        else:
            n = c % others
            path = f"apps/svc-{n % services:03}/manifests/config-{n // services:03}.yaml"
            files[path] = files[path] + f"# change {c}\n"
            changed = {path: files[path]}
        marks = {p: blob(t) for p, t in changed.items()}
        msg = f"Commit {c}".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(b"committer Bench <bench@example.com> %d +0000\n" % (ts + c))
        out.append(b"data %d\n%s\n" % (len(msg), msg))
        for p, m in marks.items():
            out.append(b"M 100644 :%d %s\n" % (m, p.encode()))
        out.append(b"\n")
    return b"".join(out)


def make_large(path, files_total, commits):
    if os.path.exists(os.path.join(path, "bench-ready")):
        return
    shutil.rmtree(path, ignore_errors=True)
    git("init", "--quiet", "--bare", "-b", "main", path)
    git("fast-import", "--quiet", cwd=path, stdin=fast_import_stream(files_total, commits))
    git("gc", "--quiet", cwd=path)
    open(os.path.join(path, "bench-ready"), "w").close()


def make_small(path):
    shutil.rmtree(path, ignore_errors=True)
    git("init", "--quiet", "--bare", "-b", "main", path)
    stream = []
    for p, t in service_files(SERVICE, IMAGE, OLD_TAG).items():
        d = t.encode()
        stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (p.encode(), len(d), d))
    msg = b"Sample gitops repository"
    head = b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata %d\n%s\n" % (len(msg), msg)
    git("fast-import", "--quiet", cwd=path, stdin=head + b"".join(stream) + b"\n")


def repo_stats(path):
    files = len(git("ls-tree", "-r", "--name-only", "main", cwd=path).splitlines())
    commits = int(git("rev-list", "--count", "main", cwd=path).strip())
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(path, "objects")) for f in fs)
    return files, commits, size / 1e6


class GithubMock(http.server.BaseHTTPRequestHandler):
    opened = 0
    # When the first request of the current run arrived (time.perf_counter()): the task calls
    # GitHub only after its push, so this is when the branch was pushed.
    first_call = None
    called = threading.Event()

    def log_message(self, *args):
        pass

    def answer(self, code, body):
        if GithubMock.first_call is None:
            GithubMock.first_call = time.perf_counter()
            GithubMock.called.set()
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(200, [])

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/pulls"):
            GithubMock.opened += 1
            n = GithubMock.opened
            self.answer(201, {"number": n, "html_url": f"https://github.example/acme/gitops/pull/{n}", "base": {"ref": "main"}})
        else:
            self.answer(201, {})

    def do_PATCH(self):
        self.do_POST()


# The audit routes need a credential of their own (the intake is left open here).
AUDIT_TOKEN = "bench-audit-" + os.urandom(8).hex()


def webhook_to_pr(server_bin, task_bin, repo_url, github_url, runs, work, clone):
    """Seconds POST -> branch pushed and POST -> succeeded with a PR, for `runs` deliveries, with
    GITOPS_CLONE=`clone`: two lists."""
    payload = json.load(open(FIXTURE))
    data = tempfile.mkdtemp(dir=work)
    env = dict(os.environ, PORT="0", DATA_DIR=data, RUST_LOG="warn", GITOPS_REPO_URL=repo_url,
               GITOPS_BASE_BRANCH="main", GITHUB_API_URL=github_url, GITHUB_REPOSITORY="acme/gitops",
               GITHUB_TOKEN="bench-token", GITOPS_CLONE=clone, AUDIT_TOKEN=AUDIT_TOKEN)
    # The task image and Lambda set neither of the SSL variables; with them the task's HTTPS
    # clients read every file of the directory (this machine sets both).
    for name in ("INTAKE_TOKEN", "ADMIN_TOKEN", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        env.pop(name, None)
    proc = subprocess.Popen([server_bin, "serve", "--task-binary", task_bin], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    times, pushed = [], []
    try:
        host, port = proc.stdout.readline().strip().removeprefix("listening on http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for i in range(runs):
            payload["build_num"] = str(50_000 + len(times) + i * 7 + int(time.time() * 1000) % 100_000)
            payload["vcs_revision"] = os.urandom(20).hex()
            GithubMock.first_call = None
            GithubMock.called.clear()
            t0 = time.perf_counter()
            conn.request("POST", "/pullrequests", body=json.dumps(payload), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = json.loads(r.read())
            assert r.status == 202, (r.status, body)
            rid = body["id"]
            while True:
                conn.request("GET", f"/pullrequests/{rid}",
                             headers={"Authorization": f"Bearer {AUDIT_TOKEN}"})
                rec = json.loads(conn.getresponse().read())
                if rec["status"] not in ("received", "dispatched", "running"):
                    break
                if time.perf_counter() - t0 > 300:
                    raise SystemExit(f"record {rid} still {rec['status']} after 300 s")
                # Until the branch is pushed, ask every 50 ms: a poll every 2 ms would take
                # CPU from the task on a small machine. Then every 2 ms, for the record's end.
                if not GithubMock.called.wait(0.05):
                    continue
                time.sleep(0.002)
            elapsed = time.perf_counter() - t0
            if rec["status"] != "succeeded" or not rec.get("pr_url"):
                raise SystemExit(f"record {rid} ended {rec['status']}: {rec.get('status_reason')}")
            times.append(elapsed)
            pushed.append(GithubMock.first_call - t0)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
    return pushed, times


def full_clone_way(repo_url, runs, work):
    """The seed's way: full clone, edit the overlay, signed-off commit, push a branch."""
    times = []
    for i in range(runs):
        d = tempfile.mkdtemp(dir=work)
        t0 = time.perf_counter()
        git("clone", "--quiet", "--branch", "main", repo_url, d)
        path = os.path.join(d, OVERLAY)
        text = open(path).read()
        open(path, "w").write(text.replace(f"newTag: {OLD_TAG}", f"newTag: {os.urandom(20).hex()}"))
        git("commit", "--quiet", "-s", "-am", "Update image", cwd=d)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/seed-way-{i}", cwd=d)
        times.append(time.perf_counter() - t0)
        shutil.rmtree(d)
    return times


def ms(t):
    """Seconds as milliseconds under a second, seconds above."""
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def fmt(ts):
    return f"{ms(statistics.median(ts))} (min {ms(min(ts))}, max {ms(max(ts))}, n={len(ts)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("task")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--small-runs", type=int, default=30,
                    help="runs of each way on the small repository (tens of milliseconds each: more runs steady the median)")
    ap.add_argument("--per-round", type=int, default=3, help="runs of each way in a row")
    ap.add_argument("--work", default=None, help="keeps the generated large repository between runs")
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--commits", type=int, default=5_000)
    args = ap.parse_args()
    work = os.path.abspath(args.work or tempfile.mkdtemp())
    os.makedirs(work, exist_ok=True)
    large = os.path.join(work, f"large-{args.files}-{args.commits}.git")
    small = os.path.join(work, "small.git")
    t0 = time.perf_counter()
    make_large(large, args.files, args.commits)
    make_small(small)
    git("config", "uploadpack.allowFilter", "true", cwd=large)
    git("config", "uploadpack.allowFilter", "true", cwd=small)
    files, commits, mb = repo_stats(large)
    print(f"BENCH gitops large repository: {files} files, {commits} commits, {mb:.1f} MB packed (ready in {time.perf_counter() - t0:.1f} s)")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GithubMock)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    github_url = f"http://127.0.0.1:{httpd.server_address[1]}"

    rows = []
    for name, path, runs in (("small (demo)", small, args.small_runs), ("large", large, args.runs)):
        url = f"file://{path}"
        # Rounds of --per-round runs of each way in turn, so that a change in the machine's load
        # during the run falls on all three alike.
        partial_push, partial, shallow_push, shallow, seed = [], [], [], [], []
        done = 0
        while done < runs:
            k = min(args.per_round, runs - done)
            p, t = webhook_to_pr(args.server, args.task, url, github_url, k, work, "partial")
            partial_push += p
            partial += t
            p, t = webhook_to_pr(args.server, args.task, url, github_url, k, work, "shallow")
            shallow_push += p
            shallow += t
            seed += full_clone_way(url, k, work)
            done += k
        print(f"BENCH gitops {name}: webhook -> branch pushed, partial clone (default) {fmt(partial_push)}")
        print(f"BENCH gitops {name}: webhook -> PR opened, partial clone (default) {fmt(partial)}")
        print(f"BENCH gitops {name}: webhook -> branch pushed, GITOPS_CLONE=shallow {fmt(shallow_push)}")
        print(f"BENCH gitops {name}: webhook -> PR opened, GITOPS_CLONE=shallow {fmt(shallow)}")
        print(f"BENCH gitops {name}: full clone + edit + commit + push (the seed's way) {fmt(seed)}")
        med = statistics.median
        rows.append((name, runs, med(partial_push), med(partial), med(shallow_push), med(shallow), med(seed),
                     min(partial_push), min(seed)))
    httpd.shutdown()

    print()
    print("| repository | webhook -> branch pushed / PR opened, partial clone (default) | same, GITOPS_CLONE=shallow | full clone + commit + push, git alone | full clone / partial, to branch pushed |")
    print("|---|---|---|---|---|")
    for name, n, pp, po, sp, so, seed, pmin, smin in rows:
        print(f"| {name} | {ms(pp)} / {ms(po)} | {ms(sp)} / {ms(so)} | {ms(seed)} | {seed / pp:.2f}x (fastest runs: {smin / pmin:.2f}x) |")
    # For scripts/bench.sh's one table (scripts/python/bench_table.py).
    for name, n, pp, po, sp, so, seed, pmin, smin in rows:
        print(f"FIGURE gitops {name}|webhook -> branch pushed / PR opened, partial clone (default), medians of {n}|{ms(pp)} / {ms(po)}|fastest run to branch pushed: {ms(pmin)}")
        print(f"FIGURE gitops {name}|webhook -> branch pushed / PR opened, GITOPS_CLONE=shallow, medians of {n}|{ms(sp)} / {ms(so)}|")
        print(f"FIGURE gitops {name}|full clone + edit + commit + push, git alone (the seed's way), median of {n}|{ms(seed)}|{seed / pp:.2f}x the partial clone's webhook -> branch pushed; fastest runs: {ms(smin)}, {smin / pmin:.2f}x")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
