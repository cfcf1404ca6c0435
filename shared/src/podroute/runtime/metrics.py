"""What the gateway saw: per-minute rollups, recent requests, worker timelines, scaling decisions, logs.

Hot path (`record_request`, called once per forwarded request): a few dict updates in memory, no
I/O. A background task (`run_flusher`) writes what changed to a SQLite file in the runtime's data
dir every `flush_interval_s`, so a restart keeps the history; rollups older than `retention_s`
(7 days by default) and requests beyond the last `raw_limit` are deleted there.

Rollups are keyed by endpoint, route template, release, worker and minute and hold: requests,
responses by status class, bytes in and out, cold starts (requests that waited for a worker to
start), wait and duration sums, and a latency sketch (`podroute.runtime.latency`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from podroute.runtime.latency import bucket_of, merge_sketches, quantile

logger = logging.getLogger("podroute.runtime.metrics")

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
PROMETHEUS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the Prometheus request-duration histogram."""

WINDOWS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
"""The query windows the API and the dashboard offer, in seconds."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    endpoint TEXT, route TEXT, release TEXT, worker TEXT, minute INTEGER,
    requests INTEGER, s2xx INTEGER, s3xx INTEGER, s4xx INTEGER, s5xx INTEGER,
    bytes_in INTEGER, bytes_out INTEGER, cold INTEGER, wait_s REAL, duration_s REAL, sketch BLOB,
    PRIMARY KEY (endpoint, route, release, worker, minute));
CREATE INDEX IF NOT EXISTS rollups_time ON rollups (endpoint, minute);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, endpoint TEXT, at REAL, method TEXT, path TEXT, route TEXT, status INTEGER,
    duration_s REAL, wait_s REAL, cold INTEGER, worker TEXT, release TEXT, request_id TEXT,
    bytes_in INTEGER, bytes_out INTEGER);
CREATE INDEX IF NOT EXISTS requests_time ON requests (endpoint, at);
CREATE TABLE IF NOT EXISTS samples (
    endpoint TEXT, minute INTEGER, inflight_max INTEGER, inflight_sum REAL, workers_max INTEGER,
    workers_sum REAL, count INTEGER, PRIMARY KEY (endpoint, minute));
CREATE TABLE IF NOT EXISTS worker_events (
    id INTEGER PRIMARY KEY, endpoint TEXT, worker TEXT, at REAL, state TEXT, reason TEXT,
    release TEXT, startup_s REAL);
CREATE INDEX IF NOT EXISTS worker_events_time ON worker_events (endpoint, at);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, endpoint TEXT, at REAL, action TEXT, reason TEXT, inflight INTEGER,
    waiting INTEGER, workers INTEGER, desired INTEGER);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (endpoint, at);
CREATE TABLE IF NOT EXISTS worker_logs (
    id INTEGER PRIMARY KEY, endpoint TEXT, worker TEXT, at REAL, line TEXT, request_id TEXT);
CREATE INDEX IF NOT EXISTS worker_logs_worker ON worker_logs (endpoint, worker, id);
"""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """One finished gateway request, as the forward path hands it to observers."""

    endpoint: str
    method: str
    path: str
    route: str
    status: int
    at: float
    duration_s: float
    wait_s: float
    cold_start: bool
    worker: str
    release: str
    request_id: str
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class MetricsSettings:
    """Retention and bounds of the metrics store."""

    retention_s: float = 7 * 86400.0
    raw_limit: int = 10_000
    log_lines_per_worker: int = 200
    flush_interval_s: float = 2.0


@dataclass
class _Rollup:
    requests: int = 0
    by_class: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    bytes_in: int = 0
    bytes_out: int = 0
    cold: int = 0
    wait_s: float = 0.0
    duration_s: float = 0.0
    sketch: dict[int, int] = field(default_factory=dict)


@dataclass
class _PromSeries:
    count: int = 0
    total_s: float = 0.0
    bytes_out: int = 0
    cold: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(PROMETHEUS_BUCKETS) + 1))


def status_class(status: int) -> str:
    """`503` -> `5xx` (1xx counts as 2xx: the request got through)."""
    return STATUS_CLASSES[min(3, max(0, status // 100 - 2))]


_RollupKey = tuple[str, str, str, str, int]
_PromKey = tuple[str, str, str, str]
LogListener = Callable[[dict[str, Any]], None]


class MetricsStore:
    """In-memory collection plus its SQLite history; see the module docstring."""

    def __init__(self, path: Path, settings: MetricsSettings | None = None) -> None:
        self.path = path
        self.settings = settings or MetricsSettings()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db_lock = threading.Lock()
        self._rollups: dict[_RollupKey, _Rollup] = {}
        self._dirty: set[_RollupKey] = set()
        self._samples: dict[tuple[str, int], list[float]] = {}
        self._requests: deque[RequestFacts] = deque(maxlen=self.settings.raw_limit)
        self._events: list[tuple[Any, ...]] = []
        self._decisions: list[tuple[Any, ...]] = []
        self._log_rows: list[tuple[Any, ...]] = []
        self._logs: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._listeners: dict[str, list[LogListener]] = {}
        self.prometheus: dict[_PromKey, _PromSeries] = {}
        self.enabled = True

    # -- hot path -------------------------------------------------------------------------------

    def record_request(self, facts: RequestFacts) -> None:
        """Count one forwarded request (memory only)."""
        if not self.enabled:
            return
        minute = int(facts.at // 60) * 60
        key = (facts.endpoint, facts.route, facts.release, facts.worker, minute)
        rollup = self._rollups.get(key)
        if rollup is None:
            rollup = self._rollups[key] = _Rollup()
        klass = min(3, max(0, facts.status // 100 - 2))
        rollup.requests += 1
        rollup.by_class[klass] += 1
        rollup.bytes_in += facts.bytes_in
        rollup.bytes_out += facts.bytes_out
        rollup.wait_s += facts.wait_s
        rollup.duration_s += facts.duration_s
        bucket = bucket_of(facts.duration_s)
        rollup.sketch[bucket] = rollup.sketch.get(bucket, 0) + 1
        if facts.cold_start:
            rollup.cold += 1
        self._dirty.add(key)
        self._requests.append(facts)
        prom_key = (facts.endpoint, facts.route, facts.method, STATUS_CLASSES[klass])
        series = self.prometheus.get(prom_key)
        if series is None:
            series = self.prometheus[prom_key] = _PromSeries()
        series.count += 1
        series.total_s += facts.duration_s
        series.bytes_out += facts.bytes_out
        series.buckets[bisect.bisect_left(PROMETHEUS_BUCKETS, facts.duration_s)] += 1
        if facts.cold_start:
            series.cold += 1

    def sample_load(self, endpoint: str, inflight: int, workers: int, at: float) -> None:
        """One sample of in-flight requests and live workers (the pool's loop calls this)."""
        key = (endpoint, int(at // 60) * 60)
        sample = self._samples.get(key)
        if sample is None:
            sample = self._samples[key] = [0, 0.0, 0, 0.0, 0]
        sample[0] = max(sample[0], inflight)
        sample[1] += inflight
        sample[2] = max(sample[2], workers)
        sample[3] += workers
        sample[4] += 1

    # -- events ---------------------------------------------------------------------------------

    def record_worker_event(
        self,
        endpoint: str,
        worker: str,
        state: str,
        reason: str,
        release: str,
        startup_s: float | None = None,
        at: float | None = None,
    ) -> None:
        """A worker changed state (starting, initializing, ready, draining, stopped, unhealthy)."""
        self._events.append((endpoint, worker, at or time.time(), state, reason, release, startup_s))

    def record_decision(
        self, endpoint: str, action: str, reason: str, inflight: int, waiting: int, workers: int, desired: int
    ) -> None:
        """A scaling decision with the inputs that led to it."""
        self._decisions.append((endpoint, time.time(), action, reason, inflight, waiting, workers, desired))

    def record_log(self, endpoint: str, worker: str, line: str) -> None:
        """A line a worker printed; JSON lines with `request_id` are findable by it."""
        request_id = ""
        if line.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(line)
                if isinstance(parsed, dict):
                    request_id = str(parsed.get("request_id") or "")
        entry = {"at": time.time(), "worker": worker, "line": line, "request_id": request_id}
        lines = self._logs.get((endpoint, worker))
        if lines is None:
            lines = self._logs[(endpoint, worker)] = deque(maxlen=self.settings.log_lines_per_worker)
        lines.append(entry)
        self._log_rows.append((endpoint, worker, entry["at"], line, request_id))
        for listener in self._listeners.get(endpoint, []):
            listener(entry)

    def subscribe_logs(self, endpoint: str, listener: LogListener) -> Callable[[], None]:
        """Call `listener` with every new log line of the endpoint; returns the unsubscribe function."""
        self._listeners.setdefault(endpoint, []).append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners[endpoint].remove(listener)

        return unsubscribe

    # -- persistence ----------------------------------------------------------------------------

    def _take_pending(self) -> dict[str, Any]:
        """Swap out everything not yet written (runs on the event loop: no lock needed)."""
        now_minute = int(time.time() // 60) * 60
        rollups = [
            (*key, r.requests, *r.by_class, r.bytes_in, r.bytes_out, r.cold, r.wait_s, r.duration_s,
             orjson.dumps(r.sketch, option=orjson.OPT_NON_STR_KEYS))
            for key in self._dirty
            if (r := self._rollups[key])
        ]  # fmt: skip
        self._dirty = set()
        for key in [k for k in self._rollups if k[4] < now_minute - 120]:
            del self._rollups[key]
        samples = [(*key, *values) for key, values in self._samples.items()]
        for sample_key in [k for k in self._samples if k[1] < now_minute - 120]:
            del self._samples[sample_key]
        pending = {
            "rollups": rollups,
            "samples": samples,
            "requests": [
                (
                    f.endpoint,
                    f.at,
                    f.method,
                    f.path,
                    f.route,
                    f.status,
                    f.duration_s,
                    f.wait_s,
                    int(f.cold_start),
                    f.worker,
                    f.release,
                    f.request_id,
                    f.bytes_in,
                    f.bytes_out,
                )
                for f in self._requests
            ],
            "events": self._events,
            "decisions": self._decisions,
            "logs": self._log_rows,
        }
        self._requests = deque(maxlen=self.settings.raw_limit)
        self._events, self._decisions, self._log_rows = [], [], []
        return pending

    def _write(self, pending: dict[str, Any]) -> None:
        cutoff = time.time() - self.settings.retention_s
        with self._db_lock, self._db:
            db = self._db
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO rollups VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", pending["rollups"]
            )
            db.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?)", pending["samples"])
            db.executemany(
                "INSERT INTO requests (endpoint, at, method, path, route, status, duration_s, wait_s, cold,"
                " worker, release, request_id, bytes_in, bytes_out) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                pending["requests"],
            )
            db.executemany(
                "INSERT INTO worker_events (endpoint, worker, at, state, reason, release, startup_s)"
                " VALUES (?,?,?,?,?,?,?)",
                pending["events"],
            )
            db.executemany(
                "INSERT INTO decisions (endpoint, at, action, reason, inflight, waiting, workers, desired)"
                " VALUES (?,?,?,?,?,?,?,?)",
                pending["decisions"],
            )
            db.executemany(
                "INSERT INTO worker_logs (endpoint, worker, at, line, request_id) VALUES (?,?,?,?,?)",
                pending["logs"],
            )
            if pending["requests"]:
                db.execute(
                    "DELETE FROM requests WHERE id <= (SELECT MAX(id) FROM requests) - ?",
                    (self.settings.raw_limit,),
                )
            if pending["logs"]:
                db.execute(
                    "DELETE FROM worker_logs WHERE id <= (SELECT MAX(id) FROM worker_logs) - ?",
                    (self.settings.log_lines_per_worker * 100,),
                )
            for table, column in (("rollups", "minute"), ("samples", "minute"), ("worker_events", "at"),
                                  ("decisions", "at"), ("worker_logs", "at")):  # fmt: skip
                db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))  # noqa: S608 - fixed names
            db.execute("COMMIT")

    async def flush(self) -> None:
        """Write everything recorded so far to SQLite (in a thread, off the event loop)."""
        await asyncio.to_thread(self._write, self._take_pending())

    def flush_now(self) -> None:
        """Synchronous flush, for shutdown."""
        self._write(self._take_pending())

    async def run_flusher(self) -> None:
        """Flush every `flush_interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            try:
                await self.flush()
            except sqlite3.Error:
                logger.exception("could not write metrics to %s", self.path)

    def close(self) -> None:
        """Flush and close the database."""
        self.flush_now()
        with self._db_lock:
            self._db.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._db_lock:
            yield self._db

    # -- queries (call through `query`, which flushes first) ------------------------------------

    async def query(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Flush, then run a query method in a thread."""
        await self.flush()
        return await asyncio.to_thread(function, *args, **kwargs)

    def summarize(self, endpoint: str, window_s: float, now: float | None = None) -> dict[str, Any]:
        """Totals, per-route table, per-minute series and load samples of the last `window_s`."""
        now = now or time.time()
        since = int((now - window_s) // 60) * 60
        with self._reading() as db:
            rows = db.execute(
                "SELECT route, release, worker, minute, requests, s2xx, s3xx, s4xx, s5xx, bytes_in,"
                " bytes_out, cold, wait_s, duration_s, sketch FROM rollups"
                " WHERE endpoint = ? AND minute >= ?",
                (endpoint, since),
            ).fetchall()
            samples = db.execute(
                "SELECT minute, inflight_max, inflight_sum, workers_max, workers_sum, count FROM samples"
                " WHERE endpoint = ? AND minute >= ? ORDER BY minute",
                (endpoint, since),
            ).fetchall()
        groups: dict[str, dict[Any, list[Any]]] = {"route": {}, "release": {}, "worker": {}, "minute": {}}
        for row in rows:
            for name, value in (
                ("route", row[0]),
                ("release", row[1]),
                ("worker", row[2]),
                ("minute", row[3]),
            ):
                groups[name].setdefault(value, []).append(row)
        minutes = sorted(groups["minute"])
        return {
            "window_s": window_s,
            "since": since,
            "totals": _aggregate(rows),
            "routes": [{"route": k, **_aggregate(v)} for k, v in sorted(groups["route"].items())],
            "releases": [{"release": k, **_aggregate(v)} for k, v in sorted(groups["release"].items())],
            "workers": [{"worker": k, **_aggregate(v)} for k, v in sorted(groups["worker"].items())],
            "series": [{"minute": m, **_aggregate(groups["minute"][m])} for m in minutes],
            "load": [
                {
                    "minute": m,
                    "inflight_max": imax,
                    "inflight_avg": round(isum / n, 3),
                    "workers_max": wmax,
                    "workers_avg": round(wsum / n, 3),
                }
                for m, imax, isum, wmax, wsum, n in samples
                if n
            ],
        }

    def requests(
        self,
        endpoint: str,
        route: str = "",
        status: str = "",
        request_id: str = "",
        since: float = 0.0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Recent requests, newest first; filter by route template, status class (`5xx`) or id."""
        clauses, params = ["endpoint = ?", "at >= ?"], [endpoint, since]
        if route:
            clauses.append("route = ?")
            params.append(route)
        if status:
            if status not in STATUS_CLASSES:
                raise ValueError(f"status must be one of {', '.join(STATUS_CLASSES)}, got {status!r}")
            low = int(status[0]) * 100
            clauses.append("status >= ? AND status < ?")
            params += [low if low > 200 else 0, low + 100]
        if request_id:
            clauses.append("request_id = ?")
            params.append(request_id)
        columns = ("at", "method", "path", "route", "status", "duration_s", "wait_s", "cold", "worker",
                   "release", "request_id", "bytes_in", "bytes_out")  # fmt: skip
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {', '.join(columns)} FROM requests WHERE {' AND '.join(clauses)}"  # noqa: S608
                " ORDER BY at DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [{**dict(zip(columns, row, strict=True)), "cold": bool(row[7])} for row in rows]

    def worker_events(self, endpoint: str, since: float = 0.0) -> list[dict[str, Any]]:
        """Every worker transition since `since`, oldest first."""
        columns = ("worker", "at", "state", "reason", "release", "startup_s")
        with self._reading() as db:
            rows = db.execute(
                "SELECT worker, at, state, reason, release, startup_s FROM worker_events"
                " WHERE endpoint = ? AND at >= ? ORDER BY at, id",
                (endpoint, since),
            ).fetchall()
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def decisions(self, endpoint: str, since: float = 0.0) -> list[dict[str, Any]]:
        """Every scaling decision since `since`, oldest first."""
        columns = ("at", "action", "reason", "inflight", "waiting", "workers", "desired")
        with self._reading() as db:
            rows = db.execute(
                "SELECT at, action, reason, inflight, waiting, workers, desired FROM decisions"
                " WHERE endpoint = ? AND at >= ? ORDER BY at, id",
                (endpoint, since),
            ).fetchall()
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def logs(
        self, endpoint: str, worker: str = "", request_id: str = "", limit: int = 200
    ) -> list[dict[str, Any]]:
        """The last log lines of an endpoint's workers (stopped ones too), oldest first."""
        clauses, params = ["endpoint = ?"], [endpoint]
        if worker:
            clauses.append("worker = ?")
            params.append(worker)
        if request_id:
            clauses.append("request_id = ?")
            params.append(request_id)
        with self._reading() as db:
            rows = db.execute(
                f"SELECT at, worker, line, request_id FROM worker_logs WHERE {' AND '.join(clauses)}"  # noqa: S608
                " ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [{"at": a, "worker": w, "line": line, "request_id": r} for a, w, line, r in reversed(rows)]


def _aggregate(rows: list[Any]) -> dict[str, Any]:
    """Sum rollup rows and read percentiles off their merged sketch."""
    requests = sum(r[4] for r in rows)
    by_class = {klass: sum(r[5 + i] for r in rows) for i, klass in enumerate(STATUS_CLASSES)}
    sketch = merge_sketches({int(k): v for k, v in orjson.loads(r[14]).items()} for r in rows)
    cold = sum(r[11] for r in rows)
    return {
        "requests": requests,
        "status": by_class,
        "errors": by_class["4xx"] + by_class["5xx"],
        "error_rate": round((by_class["4xx"] + by_class["5xx"]) / requests, 4) if requests else 0.0,
        "bytes_in": sum(r[9] for r in rows),
        "bytes_out": sum(r[10] for r in rows),
        "cold_starts": cold,
        "cold_share": round(cold / requests, 4) if requests else 0.0,
        "wait_s_avg": round(sum(r[12] for r in rows) / requests, 4) if requests else 0.0,
        "busy_s": round(sum(r[13] for r in rows) - sum(r[12] for r in rows), 4),
        "p50_s": quantile(sketch, 0.50),
        "p95_s": quantile(sketch, 0.95),
        "p99_s": quantile(sketch, 0.99),
    }
