#!/usr/bin/env python3
"""Opens N streaming chat requests through a proxy and keeps them open and idle.

The bench mock answers a stream for the model `bench-hold` with its head and one event, then
nothing: each request stays an open, idle stream. Once every stream has received its first
event this prints `ready` and waits for a line on stdin (or its end) before closing them all,
so the caller can read the proxy's memory with N idle streams open.

Usage: idle_streams.py <host:port> <n> [gateway]  (gateway adds x-portkey-provider: openai)
"""
import socket
import sys


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2])
    gateway = len(sys.argv) > 3 and sys.argv[3] == "gateway"
    body = (
        b'{"messages":[{"role":"user","content":"hi"}],'
        b'"model":"bench-hold","stream":true}'
    )
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
        + (b"x-portkey-provider: openai\r\n" if gateway else b"")
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(head + body)
        socks.append(s)
    for s in socks:
        seen = b""
        while b"data:" not in seen:
            got = s.recv(4096)
            if not got:
                sys.exit("idle_streams: a stream closed before its first event")
            seen += got
    print("ready", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
