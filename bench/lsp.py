#!/usr/bin/env python3
"""How long `fwc lsp` takes to publish diagnostics after an edit, against
`fwc check` on the same policy in the same run (the server compiles with
the same pipeline, so the ratio is its own overhead: JSON-RPC, positions,
the per-file grouping).

An edit that leaves the diagnostics as they were publishes nothing, so an
edit is timed from didChange to the answer of a hover, which needs the
compilation of the edited text (the diagnostics go out right after it).

    python3 bench/lsp.py [FWC] [RULES...]    # default: target/release/fwc 1000 10000

Policies come from bench/gen_policy.py. For each size: the best of 5 runs
of `fwc check --format json`, and the best of 5 edits (a comment added at
the end) in one server. Nothing is sent anywhere: the server is a child
process on pipes.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Server:
    def __init__(self, fwc):
        self.process = subprocess.Popen([fwc, "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 0
        self.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        self.notify("initialized", {})

    def send(self, message):
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def receive(self):
        length = None
        while True:
            line = self.process.stdout.readline().decode().strip()
            if not line:
                break
            if line.startswith("Content-Length: "):
                length = int(line.split(": ")[1])
        return json.loads(self.process.stdout.read(length))

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == self.next_id:
                return message

    def published(self, uri, version):
        while True:
            message = self.receive()
            params = message.get("params", {})
            if message.get("method") == "textDocument/publishDiagnostics" and params["uri"] == uri and params["version"] == version:
                return params["diagnostics"]

    def close(self):
        self.request("shutdown", None)
        self.notify("exit", None)
        self.process.wait()


def main():
    fwc = sys.argv[1] if len(sys.argv) > 1 else "target/release/fwc"
    sizes = [int(size) for size in sys.argv[2:]] or [1000, 10000]
    print("| rules | fwc check | fwc lsp, edit to hover | lsp/check |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for size in sizes:
            path = os.path.join(directory, f"p{size}.fw")
            subprocess.run([sys.executable, os.path.join(HERE, "gen_policy.py"), str(size), "--fw", path], check=True)
            text = open(path).read()
            check = []
            for _ in range(5):
                start = time.perf_counter()
                subprocess.run([fwc, "check", path, "--format", "json"], stdout=subprocess.DEVNULL, check=False)
                check.append(time.perf_counter() - start)
            server = Server(fwc)
            uri = "file://" + path
            server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "fwc", "version": 1, "text": text}})
            server.published(uri, 1)
            edits = []
            for version in range(2, 7):
                # A comment at the end: the rules, and so the diagnostics, stay.
                edited = text + f"# edit {version}\n"
                start = time.perf_counter()
                server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": edited}]})
                # A hover needs the new compilation: its answer comes after it.
                server.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}})
                edits.append(time.perf_counter() - start)
            server.close()
            best_check, best_edit = min(check), min(edits)
            print(f"| {size:,} | {best_check * 1000:.0f} ms | {best_edit * 1000:.0f} ms | {best_edit / best_check:.2f} |")


if __name__ == "__main__":
    main()
