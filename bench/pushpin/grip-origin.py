#!/usr/bin/env python3
"""A GRIP origin for benchmarking Pushpin: every GET is held as an SSE stream on one channel.

    python3 bench/pushpin/grip-origin.py PORT

Pushpin (through zurl) asks this origin what to do with each new subscription; the answer is
an empty `text/event-stream` response with `Grip-Hold: stream` and `Grip-Channel: <id>`, the
channel taken from the `id` query parameter (`GET /sub?id=CHANNEL`, the same URL as nchan's).
Pushpin then holds the client's connection open and writes to it whatever is published to the
channel. Python standard library only (asyncio), keep-alive, loopback only.
"""

import asyncio
import sys
from urllib.parse import parse_qs, urlsplit


def answer(target: bytes) -> bytes:
    query = parse_qs(urlsplit(target.decode("latin-1")).query)
    channel = query.get("id", ["all"])[0]
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n"
        "Grip-Hold: stream\r\n"
        f"Grip-Channel: {channel}\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode("latin-1")


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)
            writer.write(answer(parts[1] if len(parts) > 1 else b"/"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
