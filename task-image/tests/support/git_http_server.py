#!/usr/bin/env python3
"""Smart-HTTP git server for tests: `git http-backend` run as CGI behind an Authorization check.

Usage: git_http_server.py PROJECT_ROOT ACCESS_LOG
Environment: EXPECTED_AUTHORIZATION, the exact `Authorization` header value every request must
carry (passed in the environment so it is never in this process's argv).

Listens on a free port of 127.0.0.1 and prints `PORT <n>` on stdout once ready. Requests without
the header get 401 with a Basic challenge. Each request is appended to ACCESS_LOG as
`<method> <path> <status>` (headers are never logged). Stops on SIGTERM or when stdin closes.
"""

import http.server
import os
import subprocess
import sys
import threading

ROOT = os.path.abspath(sys.argv[1])
ACCESS_LOG = sys.argv[2]
EXPECTED = os.environ.get("EXPECTED_AUTHORIZATION", "")
LOCK = threading.Lock()


def log(line):
    with LOCK, open(ACCESS_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep stderr quiet; the access log has what tests need
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_git(self):
        path, _, query = self.path.partition("?")
        body = self.read_body()
        if not EXPECTED or self.headers.get("Authorization") != EXPECTED:
            log(f"{self.command} {path} 401")
            self.reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"authentication required\n")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": ROOT,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if proc.returncode != 0 and not sep:
            status, headers, payload = 500, [], proc.stderr
        # The query (`service=git-upload-pack` on the first request of each connection) has no
        # secret in it; tests count connections by it.
        log(f"{self.command} {path}{'?' + query if query else ''} {status}")
        self.reply(status, headers, payload)

    do_GET = handle_git
    do_POST = handle_git


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The test holds our stdin open; when it goes away (test ended or crashed), so do we.
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
