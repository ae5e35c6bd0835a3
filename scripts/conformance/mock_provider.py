#!/usr/bin/env python3
"""Mock OpenAI-style provider for the portgate/Portkey conformance check.

Usage: mock_provider.py PORT_FILE
Binds an ephemeral loopback port, writes the port number to PORT_FILE and serves until killed.

Behaviour is chosen by the request body's "model":
  fail-429       429, retry-after: 1, x-ratelimit-* headers, OpenAI error body
  fail-500       500, OpenAI error body
  fail-500-text  500, text/plain body "upstream exploded"
  fail-401       401, OpenAI error body
  slow           waits 1.5 s, then answers like any other model
  anything else  200 chat.completion JSON, or an SSE stream of 3 chunks + [DONE] when
                 the body has "stream": true
GET .../models answers a model list, POST .../embeddings an embedding list. Every request (except the /__ control routes) is recorded:
GET /__log returns the records as JSON, POST /__reset clears them.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = []
LOCK = threading.Lock()


def openai_error(message, etype, code):
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-provider/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _read_body(self):
        length = self.headers.get("content-length")
        if length:
            return self.rfile.read(int(length))
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data
        return b""

    def _send(self, status, body, content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _record(self, raw):
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": parsed,
            "raw_body": raw.decode("utf-8", "replace") if parsed is None else None,
        }
        with LOCK:
            LOG.append(entry)
        return parsed

    def do_GET(self):
        if self.path == "/__log":
            with LOCK:
                return self._send(200, list(LOG))
        self._record(b"")
        if self.path.split("?")[0].endswith("/models"):
            return self._send(200, {
                "object": "list",
                "data": [
                    {"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "mock"},
                    {"id": "gpt-4o", "object": "model", "created": 1700000000, "owned_by": "mock"},
                ],
            })
        return self._send(404, openai_error("Unknown path " + self.path, "invalid_request_error", None))

    def do_POST(self):
        raw = self._read_body()
        if self.path == "/__reset":
            with LOCK:
                LOG.clear()
            return self._send(200, {"ok": True})
        body = self._record(raw)
        if self.path.split("?")[0].endswith("/embeddings"):
            return self._send(200, {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "model": body.get("model") if isinstance(body, dict) else None,
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            })
        if not self.path.split("?")[0].endswith("/chat/completions"):
            return self._send(404, openai_error("Unknown path " + self.path, "invalid_request_error", None))
        model = body.get("model") if isinstance(body, dict) else None
        if model == "fail-429":
            return self._send(429, openai_error("Rate limit reached", "requests", "rate_limit_exceeded"), headers={
                "retry-after": "1",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-reset-requests": "1s",
            })
        if model == "fail-500":
            return self._send(500, openai_error("The server had an error while processing your request.", "server_error", None))
        if model == "fail-500-text":
            return self._send(500, "upstream exploded", content_type="text/plain")
        if model == "slow":
            time.sleep(1.5)
        if model == "fail-401":
            return self._send(401, openai_error("Incorrect API key provided: sk-x.", "invalid_request_error", "invalid_api_key"))
        if isinstance(body, dict) and body.get("stream") is True:
            return self._stream(model)
        return self._send(200, {
            "id": "chatcmpl-mock1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model or "unknown",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock."},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            "system_fingerprint": "fp_mock",
        })

    def _stream(self, model):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        deltas = [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
        for i, delta in enumerate(deltas):
            chunk = {
                "id": "chatcmpl-mock1",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model or "unknown",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": "stop" if i == 2 else None}],
            }
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
