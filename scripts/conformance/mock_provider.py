#!/usr/bin/env python3
"""Mock provider (OpenAI-style, plus Anthropic's Messages API) for the portgate/Portkey
conformance check.

Usage: mock_provider.py PORT_FILE
Binds an ephemeral loopback port, writes the port number to PORT_FILE and serves until killed.

Routes (matched on the end of the path, so any base path works):
  POST .../chat/completions       chat.completion JSON, or an SSE stream of 3 chunks + [DONE]
                                  when the body has "stream": true
  POST .../responses              an OpenAI Responses object, or a short Responses event
                                  stream (response.created ... response.completed, each
                                  "event: <type>" + JSON data) when "stream": true
  POST .../messages               an Anthropic message, or a short Anthropic event stream
                                  (message_start ... message_stop) when "stream": true
  POST .../messages/count_tokens  {"input_tokens": 12}
  POST .../embeddings             an embedding list (any model)
  GET  .../models                 a model list
  anything else                   404, OpenAI error body

On the first four routes the behaviour is chosen by the request body's "model":
  fail-429       429, retry-after: 1, x-ratelimit-* headers, error body
  fail-500       500, error body
  fail-500-text  500, text/plain body "upstream exploded"
  fail-401       401, error body
  slow           waits 1.5 s, then answers like any other model
  anything else  success as above
Error bodies are OpenAI's {"error": {"message", "type", "param", "code"}}, except on
.../messages and .../messages/count_tokens: Anthropic's {"type": "error", "error": {"type",
"message"}} (rate_limit_error, api_error, authentication_error).

Every request (except the /__ control routes) is recorded: GET /__log returns the records as
JSON, POST /__reset clears them.
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


def anthropic_error(etype, message):
    return {"type": "error", "error": {"type": etype, "message": message}}


def responses_object(model):
    return {
        "id": "resp_mock1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model or "unknown",
        "output": [{
            "type": "message",
            "id": "msg_mock1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello from the mock.", "annotations": []}],
        }],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10},
        "user": None,
        "metadata": {},
    }


def anthropic_message(model):
    return {
        "id": "msg_mock1",
        "type": "message",
        "role": "assistant",
        "model": model or "unknown",
        "content": [{"type": "text", "text": "Hello from the mock."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 5},
    }


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
        route = self.path.split("?")[0]
        if route.endswith("/messages/count_tokens"):
            kind = "count_tokens"
        elif route.endswith("/messages"):
            kind = "messages"
        elif route.endswith("/responses"):
            kind = "responses"
        elif route.endswith("/chat/completions"):
            kind = "chat"
        else:
            return self._send(404, openai_error("Unknown path " + self.path, "invalid_request_error", None))
        anthropic = kind in ("messages", "count_tokens")
        model = body.get("model") if isinstance(body, dict) else None
        if model == "fail-429":
            return self._send(429, anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit.")
                              if anthropic else openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
                              headers={
                "retry-after": "1",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-reset-requests": "1s",
            })
        if model == "fail-500":
            return self._send(500, anthropic_error("api_error", "Internal server error") if anthropic
                              else openai_error("The server had an error while processing your request.", "server_error", None))
        if model == "fail-500-text":
            return self._send(500, "upstream exploded", content_type="text/plain")
        if model == "slow":
            time.sleep(1.5)
        if model == "fail-401":
            return self._send(401, anthropic_error("authentication_error", "invalid x-api-key") if anthropic
                              else openai_error("Incorrect API key provided: sk-x.", "invalid_request_error", "invalid_api_key"))
        stream = isinstance(body, dict) and body.get("stream") is True
        if kind == "count_tokens":
            return self._send(200, {"input_tokens": 12})
        if kind == "messages":
            return self._messages_stream(model) if stream else self._send(200, anthropic_message(model))
        if kind == "responses":
            return self._responses_stream(model) if stream else self._send(200, responses_object(model))
        if stream:
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

    def _start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()

    def _named_events(self, events):
        """Events in the "event: <type>" + "data: <json>" form of the Responses and Messages APIs."""
        self._start_sse()
        for ev in events:
            self.wfile.write(b"event: " + ev["type"].encode() + b"\ndata: " + json.dumps(ev).encode() + b"\n\n")
            self.wfile.flush()
        self.close_connection = True

    def _responses_stream(self, model):
        done = responses_object(model)
        done["output"][0]["content"][0]["text"] = "Hello"
        item = done["output"][0]
        part = item["content"][0]
        in_progress = {**done, "status": "in_progress", "output": [], "usage": None}
        events = [
            {"type": "response.created", "response": in_progress},
            {"type": "response.in_progress", "response": in_progress},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {**item, "status": "in_progress", "content": []}},
            {"type": "response.content_part.added", "item_id": item["id"], "output_index": 0, "content_index": 0,
             "part": {**part, "text": ""}},
            {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0,
             "delta": "Hel"},
            {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0,
             "delta": "lo"},
            {"type": "response.output_text.done", "item_id": item["id"], "output_index": 0, "content_index": 0,
             "text": "Hello"},
            {"type": "response.content_part.done", "item_id": item["id"], "output_index": 0, "content_index": 0,
             "part": {**part, "text": "Hello"}},
            {"type": "response.output_item.done", "output_index": 0,
             "item": {**item, "content": [{**part, "text": "Hello"}]}},
            {"type": "response.completed", "response": done},
        ]
        for i, ev in enumerate(events):
            ev["sequence_number"] = i
        self._named_events(events)

    def _messages_stream(self, model):
        msg = anthropic_message(model)
        self._named_events([
            {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": 5, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 5}},
            {"type": "message_stop"},
        ])

    def _stream(self, model):
        self._start_sse()
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
