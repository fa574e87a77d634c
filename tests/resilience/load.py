"""Slow and long-lived clients on real sockets, and probes that time everyone else.

``Crowd`` runs the unwelcome clients on an asyncio loop in a background thread:
slowloris connections that send a request one byte per second, request bodies
sent one byte per second, and MCP tool calls whose SSE responses stay open.
Slow clients reconnect whenever the server closes them, as an attacker would,
until the crowd is dismissed. ``probe`` meanwhile sends ordinary requests from
the calling thread, each on a new connection, and times them.

Every loop is bounded in count and in time, and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Coroutine
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import requests

HOST = "127.0.0.1"
#: The probes' client timeout: a probe slower than this counts as unanswered.
PROBE_TIMEOUT = 10.0
#: At most this many probes per call of ``probe``, whatever the duration.
MAX_PROBES = 2000
#: How long a slow client may take to connect before it counts as refused.
CONNECT_TIMEOUT = 10.0


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# --------------------------------------------------------------------------- #
# Figures
# --------------------------------------------------------------------------- #


@dataclass
class Probe:
    """One timed request: ``ok`` means the expected status and body came back."""

    kind: str
    seconds: float
    ok: bool
    detail: str = ""


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value below which ``fraction`` of them are)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figures:
    """The probes of one scenario, and what the crowd saw meanwhile."""

    scenario: str
    probes: list[Probe] = field(default_factory=list)
    crowd: dict[str, Any] = field(default_factory=dict)
    #: The gunicorn worker class that served them.
    model: str = ""

    def failed(self) -> list[Probe]:
        return [p for p in self.probes if not p.ok]

    def kinds(self) -> list[str]:
        return sorted({p.kind for p in self.probes})

    def row(self, kind: str | None = None) -> dict[str, Any]:
        """answered/total and p50/p99/max latency (ms) of one kind, or of all."""
        chosen = [p for p in self.probes if kind is None or p.kind == kind]
        seconds = [p.seconds for p in chosen] or [0.0]
        return {
            "kind": kind or "all",
            "answered": sum(p.ok for p in chosen),
            "total": len(chosen),
            "p50_ms": round(statistics.median(seconds) * 1000, 1),
            "p99_ms": round(_percentile(seconds, 0.99) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "model": self.model,
            "crowd": self.crowd,
            "probes": [self.row(kind) for kind in [*self.kinds(), None]]
            if self.probes
            else [],
        }

    def report(self) -> str:
        lines = [f"[{self.scenario}] {self.model}; crowd: {self.crowd}"]
        for kind in [*self.kinds(), None]:
            row = self.row(kind)
            lines.append(
                f"[{self.scenario}] {row['kind']:>9}: {row['answered']}/{row['total']}"
                f" answered, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms,"
                f" max {row['max_ms']} ms"
            )
        details = Counter(p.detail for p in self.failed())
        if details:
            lines.append(f"[{self.scenario}] failures: {dict(details.most_common(5))}")
        return "\n".join(lines)


def probe(
    kinds: dict[str, Callable[[float], str | None]],
    seconds: float,
    *,
    interval: float = 0.1,
    timeout: float = PROBE_TIMEOUT,
) -> list[Probe]:
    """Call each kind in turn for ``seconds``; a kind returns None when the answer
    was right, else what was wrong. Each call gets ``timeout`` to answer."""
    probes: list[Probe] = []
    names = list(kinds)
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(probes) < MAX_PROBES:
        name = names[len(probes) % len(names)]
        started = time.perf_counter()
        try:
            problem = kinds[name](timeout)
        except (requests.RequestException, ValueError, LookupError) as exc:
            problem = type(exc).__name__
        probes.append(Probe(name, time.perf_counter() - started, problem is None))
        probes[-1].detail = f"{name}: {problem}" if problem else ""
        time.sleep(interval)
    return probes


# --------------------------------------------------------------------------- #
# The crowd
# --------------------------------------------------------------------------- #


@dataclass
class SlowStats:
    """Slow clients of one kind: connections made and how each one ended."""

    target: int
    opened: int = 0
    #: The server closed the connection (EOF or reset) without answering.
    closed_by_server: int = 0
    #: The server answered (status line -> count), then the client reconnected.
    answered: Counter[str] = field(default_factory=Counter)
    connect_failures: int = 0
    #: Connections currently open.
    live: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "opened": self.opened,
            "closed_by_server": self.closed_by_server,
            "answered": dict(self.answered),
            "connect_failures": self.connect_failures,
        }


@dataclass
class StreamStats:
    """Tool calls whose SSE responses are held open."""

    target: int
    #: Streams whose first progress event arrived.
    opened: int = 0
    #: Streams refused (status line -> count) or that never started in time.
    refused: Counter[str] = field(default_factory=Counter)
    #: Streams that ended (the call finished or the server closed it).
    ended: int = 0
    #: Of those, ended by an error rather than an end of stream.
    broken: Counter[str] = field(default_factory=Counter)
    events: int = 0

    @property
    def live(self) -> int:
        return self.opened - self.ended

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "opened": self.opened,
            "live": self.live,
            "ended": self.ended,
            "broken": dict(self.broken),
            "refused": dict(self.refused),
            "progress_events": self.events,
        }


def _status_line(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ", 2)
    return parts[1] if len(parts) > 1 and parts[1].isdigit() else "garbage"


class Crowd:
    """Slow and long-lived clients of one server, on a loop in its own thread."""

    def __init__(self, port: int, *, seconds: float) -> None:
        self.port = port
        #: No client of this crowd outlives this, whatever happens.
        self.seconds = seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._end = 0.0
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> Crowd:
        self._thread.start()
        self._end = time.monotonic() + self.seconds
        self._stopping = self._call(self._make_event())
        return self

    def __exit__(self, *exc: object) -> None:
        self.dismiss()

    async def _make_event(self) -> asyncio.Event:
        return asyncio.Event()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _over(self) -> bool:
        stopping = self._stopping
        return (
            stopping is not None and stopping.is_set()
        ) or time.monotonic() >= self._end

    def dismiss(self, grace: float = 5.0) -> None:
        """Close every client: signal them, wait ``grace``, cancel the rest."""
        if not self._thread.is_alive():
            return
        stopping = self._stopping
        if stopping is not None:
            self._loop.call_soon_threadsafe(stopping.set)
        try:
            self._call(self._drain(grace), timeout=grace + 10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()

    async def _drain(self, grace: float) -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0.2)  # let the transports' close callbacks run

    @staticmethod
    def wait_until(
        condition: Callable[[], bool], seconds: float, step: float = 0.1
    ) -> bool:
        """Poll ``condition`` for at most ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(step)
        return condition()

    # -- slow clients ---------------------------------------------------------
    def slowloris(self, count: int, path: str = "/healthz") -> SlowStats:
        """``count`` connections sending a request head one byte per second."""
        trickle = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nX-Slow: "
        trickle += "s" * 4000
        stats = SlowStats(target=count)
        for _ in range(count):
            self._spawn(self._slow_client(stats, b"", trickle.encode()))
        return stats

    def slow_bodies(self, count: int, path: str, body: bytes) -> SlowStats:
        """``count`` POSTs whose head arrives at once and body one byte per second."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        stats = SlowStats(target=count)
        for _ in range(count):
            self._spawn(self._slow_client(stats, head, body))
        return stats

    async def _slow_client(self, stats: SlowStats, head: bytes, trickle: bytes) -> None:
        """Connect, send ``head``, then ``trickle`` one byte a second; reconnect
        when the server closes or answers; stop when the crowd is dismissed."""
        while not self._over():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                stats.connect_failures += 1
                await asyncio.sleep(1.0)
                continue
            stats.opened += 1
            stats.live += 1
            try:
                await self._trickle(stats, reader, writer, head, trickle)
            finally:
                stats.live -= 1
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _trickle(
        self,
        stats: SlowStats,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        trickle: bytes,
    ) -> None:
        try:
            if head:
                writer.write(head)
            for index in range(len(trickle)):
                if self._over():
                    return
                writer.write(trickle[index : index + 1])
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    continue
                if data:
                    stats.answered[_status_line(data)] += 1
                else:
                    stats.closed_by_server += 1
                return
        except OSError:  # reset or broken pipe: the server closed it
            stats.closed_by_server += 1

    # -- long-lived streams ---------------------------------------------------
    def streams(
        self,
        count: int,
        path: str,
        headers: list[dict[str, str]],
        body: Callable[[int], bytes],
        *,
        concurrency: int = 64,
        start_timeout: float = 15.0,
    ) -> StreamStats:
        """``count`` POSTs of ``body(index)`` (a streaming tool call; JSON-RPC ids
        must differ within a session) to ``path``, each with the next of
        ``headers`` (round robin), read until dismissed."""
        stats = StreamStats(target=count)
        gate = self._call(self._semaphore(concurrency))
        for index in range(count):
            request = (path, headers[index % len(headers)], body(index))
            self._spawn(self._stream(stats, gate, request, start_timeout))
        return stats

    async def _semaphore(self, size: int) -> asyncio.Semaphore:
        return asyncio.Semaphore(size)

    async def _stream(
        self,
        stats: StreamStats,
        gate: asyncio.Semaphore,
        request: tuple[str, dict[str, str], bytes],
        start_timeout: float,
    ) -> None:
        path, headers, body = request
        writer: asyncio.StreamWriter | None = None
        started = False
        phase = "connect"
        try:
            async with gate:
                if self._over():
                    return
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), CONNECT_TIMEOUT
                )
                all_headers = {
                    "Host": f"{HOST}:{self.port}",
                    "Content-Length": str(len(body)),
                    **headers,
                }
                lines = "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
                writer.write(f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
                phase = "response head"
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), start_timeout
                )
                status = _status_line(head)
                if status != "200":
                    stats.refused[status] += 1
                    return
                phase = "first event"
                started = await self._first_event(stats, reader, start_timeout)
            if started:
                phase = "held"
                await self._hold(stats, reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            if not started:
                stats.refused[f"{type(exc).__name__} at {phase}"] += 1
            else:
                stats.broken[type(exc).__name__] += 1
        finally:
            if started:
                stats.ended += 1
            if writer is not None:
                writer.close()

    async def _first_event(
        self, stats: StreamStats, reader: asyncio.StreamReader, timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline and not self._over():
            chunk = await asyncio.wait_for(
                reader.read(65536), max(0.01, deadline - time.monotonic())
            )
            if not chunk:
                stats.refused["ended before the first event"] += 1
                return False
            seen = (seen + chunk)[-200_000:]
            if b"notifications/progress" in seen:
                stats.opened += 1
                stats.events += seen.count(b"notifications/progress")
                return True
        stats.refused["no event in time"] += 1
        return False

    async def _hold(self, stats: StreamStats, reader: asyncio.StreamReader) -> None:
        while not self._over():
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                return
            stats.events += chunk.count(b"notifications/progress")


@contextlib.contextmanager
def crowd(port: int, seconds: float) -> Iterator[Crowd]:
    with Crowd(port, seconds=seconds) as running:
        yield running
