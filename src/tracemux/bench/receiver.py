"""A minimal, fast HTTP/1.1 receiver on 127.0.0.1 for the benchmarks.

    python -m tracemux.bench.receiver [--delay SECONDS]

Prints ``PORT <n>`` once listening. Each request body is read (Content-Length or chunked)
and discarded; the answer is ``200`` with an empty body (a GET: a JSON list of one project),
after ``--delay`` seconds if given (a slow destination). Keep-alive connections are
served until the client closes them. The receiver exits when its stdin reaches end of
file, printing one JSON line of what it counted (``requests``, ``bytes``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
#: the answer to a GET: one project, enough for an SDK's credential check (langfuse's
#: ``auth_check()`` lists the projects of its keys)
_PROJECTS = b'{"data": [{"id": "bench", "name": "bench", "metadata": {}}]}'
GET_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_PROJECTS)).encode()
    + b"\r\n\r\n"
    + _PROJECTS
)


class _Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return total
        await reader.readexactly(size + 2)
        total += size


async def _serve(delay: float, counts: _Counts, stop: asyncio.Event) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, chunked = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip() or b"0")
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    length = await _read_chunked(reader)
                elif length:
                    await reader.readexactly(length)
                counts.requests += 1
                counts.bytes += length
                if delay:
                    await asyncio.sleep(delay)
                writer.write(GET_RESPONSE if head.startswith(b"GET ") else RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:  # a malformed request: close the connection
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()  # open keep-alive connections end with the process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    args = parser.parse_args(argv)
    counts = _Counts()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        try:
            sys.stdin.read()
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="receiver-stdin", daemon=True).start()
    try:
        loop.run_until_complete(_serve(args.delay, counts, stop))
    finally:
        loop.close()
    sys.stdout.write(json.dumps({"requests": counts.requests, "bytes": counts.bytes}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
