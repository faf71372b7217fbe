#!/usr/bin/env python3
"""What an idle subscriber costs the hub over TLS: resident memory per connection.

Starts `herald serve` (HERALD_BIN, default target/debug/herald) once per mode on a free loopback
port, opens WARMUP subscriptions, reads the hub's VmRSS, opens COUNT more, waits for the hub to
settle, reads VmRSS again, and prints (after - before) / COUNT. Modes:

  plain   HTTP/1.1 over TCP (the subscription fast path), the baseline
  tls-h1  HTTP/1.1 over TLS (ALPN http/1.1: the same fast path on a rustls stream)
  tls-h2  HTTP/2 over TLS (ALPN h2: hyper's HTTP/2 server), one connection per subscriber
  tls-h2x10  HTTP/2 over TLS, 10 subscriptions (streams) per connection, as a browser's tabs
             share one connection to the hub; the figure is per subscription

Each subscriber sends one request and then only answers HTTP/2 SETTINGS and PINGs. The
certificate is a throwaway one made with openssl. Python's standard library only.

Usage: python3 bench/tls-idle.py [COUNT] [WARMUP]
"""

import asyncio
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERALD = os.environ.get("HERALD_BIN", os.path.join(ROOT, "target", "debug", "herald"))
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
WARMUP = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PATH = "/.well-known/mercure?topic=idle"
STREAMS = {"tls-h2x10": 10}
RESPONSES = [0]  # HTTP/2 response heads received: every stream was answered


def certificate(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


def string(value):
    data = value.encode()
    assert len(data) < 127
    return bytes([len(data)]) + data


def h2_request(authority, streams=1):
    # HPACK, static table, no Huffman: :method GET (2), :scheme https (7), :path (4, literal),
    # :authority (1, literal), accept (19, literal).
    block = (b"\x82\x87" + b"\x04" + string(PATH) + b"\x01" + string(authority)
             + b"\x0f\x04" + string("text/event-stream"))
    frame = lambda kind, flags, stream, payload: (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload)
    headers = b"".join(frame(1, 0x5, 2 * i + 1, block) for i in range(streams))
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + headers, frame


async def h2_idle(reader, writer, frame):
    """Answers SETTINGS and PING until the connection closes."""
    buffer = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        buffer += data
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags, payload = buffer[3], buffer[4], buffer[9:9 + length]
            buffer = buffer[9 + length:]
            if kind == 1:
                RESPONSES[0] += 1
            if kind == 4 and not flags & 1:
                writer.write(frame(4, 1, 0, b""))
            elif kind == 6 and not flags & 1:
                writer.write(frame(6, 1, 0, payload))


async def subscriber(mode, port, context, opened, tasks):
    authority = f"127.0.0.1:{port}"
    if mode == "plain":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    if mode.startswith("tls-h2"):
        request, frame = h2_request(authority, STREAMS.get(mode, 1))
        writer.write(request)
        tasks.append(asyncio.ensure_future(h2_idle(reader, writer, frame)))
    else:
        writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {authority}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        RESPONSES[0] += 1
        tasks.append(asyncio.ensure_future(reader.read(1 << 20)))
    opened.append(writer)


async def open_many(mode, port, context, count, opened, tasks):
    # A few at a time: the hub's accept queue and handshakes are not what is measured.
    for start in range(0, count, 50):
        await asyncio.gather(*(subscriber(mode, port, context, opened, tasks)
                               for _ in range(min(50, count - start))))


async def measure(mode, cert, key):
    port = free_port()
    args = [HERALD, "serve", "--listen", f"127.0.0.1:{port}", "--jwt-key",
            "tls-idle-bench-key-0123456789abcdef", "--anonymous", "--transport", "memory",
            "--max-subscriptions-per-client", "0",
            "--log", "warn"]
    if mode != "plain":
        args += ["--tls-cert", cert, "--tls-key", key]
    hub = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"] if mode.startswith("tls-h2") else ["http/1.1"])
        opened, tasks = [], []
        per_connection = STREAMS.get(mode, 1)
        await open_many(mode, port, context, WARMUP // per_connection, opened, tasks)
        await asyncio.sleep(2)
        before = rss_kib(hub.pid)
        await open_many(mode, port, context, COUNT // per_connection, opened, tasks)
        await asyncio.sleep(3)
        after = rss_kib(hub.pid)
        answered = RESPONSES[0]
        RESPONSES[0] = 0
        for writer in opened:
            writer.close()
        for task in tasks:
            task.cancel()
        return before, after, answered
    finally:
        hub.terminate()
        hub.wait()


def main():
    with tempfile.TemporaryDirectory() as directory:
        cert, key = certificate(directory)
        print(f"{HERALD}: {COUNT} idle subscribers after {WARMUP} (VmRSS of the hub)")
        for mode in ("plain", "tls-h1", "tls-h2", "tls-h2x10"):
            before, after, answered = asyncio.run(measure(mode, cert, key))
            per = (after - before) * 1024 / COUNT / 1000
            print(f"{mode:9} {before:8} KiB -> {after:8} KiB: {per:5.1f} KB per subscriber "
                  f"({answered} subscriptions answered)")


if __name__ == "__main__":
    main()
