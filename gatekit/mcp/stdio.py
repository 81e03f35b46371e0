"""The process's stdin and stdout as the SDK's `stdio_server` reads and writes them, on the event loop.

The SDK reads and writes the standard streams through worker threads: two thread hops per message written,
one per line read, and a read the gateway cannot stop when it must (its upstream is gone). When stdin and
stdout are pipes or sockets (as an MCP client starts its servers) this hands the SDK asyncio pipe streams
instead; otherwise (a file, say) a daemon thread reads stdin and the SDK writes stdout its own way.

Like the SDK's own transport, the wire is kept private while serving: fd 0 reads the null device and fd 1
writes to stderr, so a stray `print` cannot corrupt the protocol. A line longer than `limit` bytes is
dropped (logged), never buffered whole.

>>> async with wire() as (stdin, stdout):
...     async with stdio_server(stdin=stdin, stdout=stdout) as (read, write): ...
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

logger = logging.getLogger("gatekit.mcp")
LIMIT = 64 << 20  # bytes in one JSON-RPC message on stdin; the gateway refuses large arguments well below this


@asynccontextmanager
async def wire(limit: int = LIMIT) -> AsyncIterator[tuple[Any, Any]]:
    """(stdin, stdout) for `stdio_server(stdin=..., stdout=...)`; stdout is None when the SDK should write it."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    transports: list[asyncio.BaseTransport] = []
    try:
        try:
            reader = asyncio.StreamReader(limit=1 << 16)
            read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                             os.fdopen(wire_in, "rb", buffering=0))
            transports.append(read_transport)
            stdin: Any = _Lines(reader, limit)
        except (ValueError, OSError):  # not a pipe, socket or character device: read it in a daemon thread
            stdin = _ThreadLines(wire_in, limit)
        try:
            write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                      os.fdopen(wire_out, "wb", buffering=0))
            transports.append(write_transport)
            stdout: Any = _Writer(asyncio.StreamWriter(write_transport, protocol, None, loop))
        except (ValueError, OSError):
            stdout = anyio.wrap_file(os.fdopen(wire_out, "w", encoding="utf-8", closefd=False))
        yield stdin, stdout
    finally:
        for transport in transports:
            transport.close()
        for fd in saved:  # asyncio made them non-blocking: whoever shares them expects blocking ones
            try:
                os.set_blocking(fd, True)
            except OSError:
                pass
        os.dup2(saved[0], 0)
        os.dup2(saved[1], 1)
        for fd in saved:
            os.close(fd)


class _Lines:
    """Lines of text from a stream reader, each at most `limit` bytes (a longer one is skipped)."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self.reader = reader
        self.split = _Splitter(limit)

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            line = self.split.next_line()
            if line is not None:
                return line
            chunk = await self.reader.read(1 << 16)
            if not chunk:
                rest = self.split.rest()
                if rest is None:
                    raise StopAsyncIteration
                return rest
            self.split.feed(chunk)


class _Splitter:
    """Splits bytes into lines, dropping (and logging) any line over `limit` bytes without keeping it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = b""
        self.skipping = False

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk

    def next_line(self) -> str | None:
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > self.limit:
                    if not self.skipping:
                        logger.warning("dropped a message longer than %d bytes from the client", self.limit)
                    self.skipping, self.buffer = True, b""
                return None
            line, self.buffer = self.buffer[:end + 1], self.buffer[end + 1:]
            if self.skipping:  # the tail of a dropped line
                self.skipping = False
                continue
            if len(line) > self.limit:
                logger.warning("dropped a message longer than %d bytes from the client", self.limit)
                continue
            return line.decode("utf-8", "replace")

    def rest(self) -> str | None:
        rest, self.buffer = self.buffer, b""
        return rest.decode("utf-8", "replace") if rest and not self.skipping else None


class _Writer:
    """What `stdio_server` writes to: text in, bytes to the pipe, `flush` waits for the pipe to drain."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


class _ThreadLines:
    """Lines from a descriptor read by a daemon thread (a blocked read then holds no one up at exit)."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self._lines: Any = None

    def __aiter__(self) -> _ThreadLines:
        if self._lines is None:
            send, self._lines = anyio.create_memory_object_stream[str](16)
            token = anyio.lowlevel.current_token()
            threading.Thread(target=self._read, args=(send, token), daemon=True, name="gatekit-mcp-stdin").start()
        return self

    async def __anext__(self) -> str:
        try:
            return await self._lines.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def _read(self, send: Any, token: Any) -> None:
        # os.read on the descriptor: a buffered reader's lock, held by a blocked daemon thread, aborts the
        # interpreter at exit
        split = _Splitter(self.limit)
        try:
            while chunk := os.read(self.fd, 1 << 16):
                split.feed(chunk)
                while (line := split.next_line()) is not None:
                    anyio.from_thread.run(send.send, line, token=token)
            if (rest := split.rest()) is not None:
                anyio.from_thread.run(send.send, rest, token=token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError, OSError):
            return  # the gateway stopped reading (or its loop is gone)
        finally:
            try:
                anyio.from_thread.run_sync(send.close, token=token)
            except RuntimeError:
                pass

