"""The process's stdin and stdout as the SDK's server reads and writes them, on the event loop.

The SDK reads and writes the standard streams through worker threads: two thread hops per message written,
one per line read, and a read the gateway cannot stop when it must (its upstream is gone). When stdin and
stdout are pipes or sockets (as an MCP client starts its servers) this hands the SDK asyncio pipe streams
instead; otherwise (a file, say) a daemon thread reads stdin and the SDK writes stdout its own way.

Like the SDK's own transport, the wire is kept private while serving: fd 0 reads the null device and fd 1
writes to stderr, so a stray `print` cannot corrupt the protocol. A line longer than `limit` bytes is
dropped (logged), never buffered whole.

The SDK's `stdio_server` puts a reader task and a writer task between the wire and its dispatcher, joined
to it by memory streams: a task switch per message each way. `MessageStreams` are the SDK's own stream
protocols (`mcp.shared._stream_protocols`, what `Server.run` and a client `Transport` take) over the lines
themselves: the dispatcher's loop reads and parses the next line (`jsonrpc_message_adapter`, as the SDK's
transport does), the task sending a message serialises and writes it (`model_dump_json`, the same).

The gateway's upstream over stdio is the same on the other end: `ChildProcess` is a client `Transport`
(what `mcp.Client` takes) that starts the server as the SDK's `stdio_client` does (its own session and
process group, the SDK's default environment under the given one) and stops it as the SDK does (stdin
closed, a grace period, then the SDK's `terminate_posix_process_tree`), with the messages read and written
by the dispatcher's own tasks. Its stdout closing ends the connection at once, even if the process lives on
(the calls in flight fail then, not when it exits). Off POSIX the SDK's `stdio_client` is used as it is.

>>> async with wire() as (stdin, stdout):
...     read, write = message_streams(stdin, stdout)
...     await server.run(read, write, options)
>>> async with Client(ChildProcess(StdioServerParameters(command="python", args=["server.py"]))) as client: ...
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp.types as types
from mcp.shared.message import SessionMessage

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
            stdin, reading = await _read_pipe(loop, _pipe_file(loop, wire_in, "rb"), limit)
            transports.append(reading)
        except (ValueError, OSError):  # not a pipe, socket or character device: read it in a daemon thread
            stdin = _ThreadLines(wire_in, limit)
        try:
            stdout, writing = await _write_pipe(loop, _pipe_file(loop, wire_out, "wb"))
            transports.append(writing)
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


def _pipe_file(loop: asyncio.AbstractEventLoop, fd: int, mode: str) -> Any:
    """`fd` as the file object a loop's pipe transport takes, closed once when the transport closes: asyncio's
    transports close the file object; uvloop's close the descriptor themselves and then the file object too,
    so there the object must not own it (else the number is closed twice, and the second close may hit
    whatever another thread opened under that number meanwhile)."""
    return os.fdopen(fd, mode, buffering=0, closefd=not type(loop).__module__.startswith("uvloop"))


def _close_file(file: Any) -> None:
    """Close a `_pipe_file` that no transport took, and its descriptor."""
    fd, owned = file.fileno(), file.closefd
    file.close()
    if not owned:
        os.close(fd)


async def _read_pipe(loop: asyncio.AbstractEventLoop, file: Any, limit: int) -> tuple[Any, Any]:
    """The lines of a pipe (or socket) read on the event loop, and its transport (which closes `file`)."""
    reader = asyncio.StreamReader(limit=1 << 16)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), file)
    return _Lines(reader, limit), transport


async def _write_pipe(loop: asyncio.AbstractEventLoop, file: Any) -> tuple[Any, Any]:
    """A line writer to a pipe (or socket) on the event loop, and its transport (which closes `file`)."""
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, file)
    return _Writer(asyncio.StreamWriter(transport, protocol, None, loop)), transport


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
        if self.writer.transport.is_closing():  # the reader went away (uvloop closes the transport at once;
            raise BrokenPipeError("the pipe is closed")  # writing to it then is a RuntimeError, not an OSError)
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



def message_streams(lines: Any, out: Any) -> tuple[MessageReader, MessageWriter]:
    """JSON-RPC messages read from `lines` (an async iterator of lines) and written to `out` (`write`, `flush`)."""
    return MessageReader(lines), MessageWriter(out)


class _Stream:
    """What the SDK's streams share: closing (then `_closed`), and use as an async context manager."""

    _closed = False

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class MessageReader(_Stream):
    """The SDK's read stream over lines: each a `SessionMessage`, or the exception that parsing it raised."""

    def __init__(self, lines: Any) -> None:
        self._lines = lines.__aiter__()

    async def receive(self) -> SessionMessage | Exception:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
        except Exception as exc:  # noqa: BLE001  as the SDK's transports do: the dispatcher reports it
            return exc

    def __aiter__(self) -> MessageReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class MessageWriter(_Stream):
    """The SDK's write stream over a line writer: one JSON line per message, written whole, then flushed."""

    def __init__(self, out: Any) -> None:
        self._out = out
        # a pipe's writer takes a line at once (senders never interleave); a file written from worker threads
        # takes one sender at a time
        self._lock = None if isinstance(out, _Writer) else anyio.Lock()

    async def send(self, item: SessionMessage) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        text = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
        try:
            async with self._lock or nullcontext():
                await self._out.write(text)
                await self._out.flush()
        except (ConnectionError, OSError) as exc:  # the reader went away
            self._closed = True
            raise anyio.BrokenResourceError from exc


class ChildProcess:
    """A client `Transport` to a server started as a child process, its stdin and stdout the wire.

    The child is started by `subprocess.Popen` and its pipes are handed to the event loop, not started by the
    loop's own `subprocess_exec`: under uvloop a child's stdout read that way reaches end-of-file only when the
    process exits, so a server that closed its stdout but lives on would hold the calls in flight until then.
    """

    def __init__(self, params: Any, limit: int = LIMIT, grace: float = 2.0, kill_after: float = 2.0) -> None:
        self.params = params
        self.limit = limit
        self.grace = grace  # seconds the server has to exit once its stdin is closed
        self.kill_after = kill_after  # seconds between SIGTERM to its process group and SIGKILL
        self.process: _Child | None = None
        self._reading: Any = None  # the loop's transports over the server's stdout and stdin, once taken
        self._writing: Any = None
        self._sdk: Any = None

    async def __aenter__(self) -> tuple[Any, Any]:
        from mcp.client.stdio import get_default_environment, stdio_client

        if sys.platform == "win32":  # the SDK's own transport, Job Objects and all
            self._sdk = stdio_client(self.params)
            return await self._sdk.__aenter__()
        params = self.params
        child_in, to_child = os.pipe()  # not inheritable (PEP 446): the child gets only its two ends
        from_child, child_out = os.pipe()
        try:
            popen = subprocess.Popen([params.command, *params.args], stdin=child_in, stdout=child_out,
                                     stderr=sys.stderr, env=get_default_environment() | (params.env or {}),
                                     cwd=params.cwd, start_new_session=True)
        except BaseException:
            os.close(to_child)
            os.close(from_child)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self.process = _Child(popen)
        loop = asyncio.get_running_loop()
        reading, writing = _pipe_file(loop, from_child, "rb"), _pipe_file(loop, to_child, "wb")
        try:
            lines, self._reading = await _read_pipe(loop, reading, self.limit)
            out, self._writing = await _write_pipe(loop, writing)
        except BaseException:
            if self._reading is None:  # the loop closes the pipes it took
                _close_file(reading)
            if self._writing is None:
                _close_file(writing)
            with anyio.CancelScope(shield=True):
                await self._stop(self.process)
            raise
        return message_streams(lines, out)

    async def __aexit__(self, *exc: Any) -> None:
        if self._sdk is not None:
            await self._sdk.__aexit__(*exc)
            return
        process = self.process
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            await self._stop(process)

    async def _stop(self, process: _Child) -> None:
        """As the SDK stops its server: close its stdin, wait out the grace period, then end its process group."""
        from mcp.os.posix.utilities import terminate_posix_process_tree

        if self._writing is not None:  # the server reads end-of-file
            self._writing.close()
        if not await _exited(process, self.grace):
            await terminate_posix_process_tree(process, self.kill_after)  # type: ignore[arg-type]
            if not await _exited(process, 2.0):
                logger.warning("the upstream MCP server (pid %d) is still alive after SIGKILL", process.pid)
        if self._writing is not None and self._writing.get_write_buffer_size():
            self._writing.abort()  # unsent, and a descendant holds the pipe
        if self._reading is not None:
            self._reading.close()
        self._reading = self._writing = None


class _Child:
    """A started server as the SDK's `terminate_posix_process_tree` sees a process: a pid, and a return code
    that, read, reaps the process once it has exited (else a zombie leader keeps its group alive)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()


async def _exited(process: _Child, timeout: float) -> bool:
    """Whether the process exited (and was reaped) within `timeout` s."""
    with anyio.move_on_after(timeout):
        while process.returncode is None:
            await anyio.sleep(0.01)
    return process.returncode is not None
