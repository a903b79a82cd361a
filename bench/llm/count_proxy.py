"""A counting HTTP proxy for bench/llm: forwards every request to the
upstream `dvx serve` and counts what it forwarded and what it handed back
whole. GET /_count answers {"forwarded": n, "answered": n}.
Usage: count_proxy.py UPSTREAM_HOST:PORT  (prints the port it listens on)."""

import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = sys.argv[1]
LOCK = threading.Lock()
COUNTS = {"forwarded": 0, "answered": 0}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_count":
            with LOCK:
                body = json.dumps(COUNTS).encode()
            return self.reply(200, [("content-type", "application/json")], body)
        self.forward("GET", b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.forward("POST", body)

    def forward(self, method, body):
        with LOCK:
            COUNTS["forwarded"] += 1
        conn = http.client.HTTPConnection(UPSTREAM, timeout=600)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(method, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.reply(r.status, r.getheaders(), data)
        with LOCK:
            COUNTS["answered"] += 1


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client killed with -9 mid-answer is what the bench does on purpose


server = Server(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
