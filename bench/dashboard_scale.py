"""The dashboard at scale (`nox -s bench_dashboard`; a benchmark, not a timed test).

    python bench/dashboard_scale.py [--databases sqlite,postgresql] [--requests 40] [--out report.md]

Seeds 1 000 endpoints, 10 000 deployments (10 per endpoint over two environments) and 100 000 audit
events into a fresh, migrated database, then serves the dashboard in-process (its ASGI app, the
lifespan running, logged in) and times the endpoint list, an endpoint's detail page, an
environment's history panel, the audit log (first page and a page deep in the past) and the import
preview with unchanged sources (discovery answered from its cache). Prints
p50/p95 per page and database; the goal is p95 <= 50 ms for each. PostgreSQL comes from
PODROUTE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres): a scratch
database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "shared" / "src")]

from alembic import command  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from dashboard.app import create_app  # noqa: E402
from dashboard.db import alembic_config, create_engine  # noqa: E402
from dashboard.models import AuditEvent, Deployment, Endpoint, User, utc_now  # noqa: E402
from dashboard.secrets_at_rest import KeyRing  # noqa: E402
from dashboard.security import hash_password  # noqa: E402
from dashboard.settings import DashboardSettings  # noqa: E402
from tests.support.dashboard import (  # noqa: E402
    create_scratch_database,
    drop_scratch_database,
    postgres_admin_url,
    write_demo_project,
)

ENDPOINTS = 1_000
DEPLOYMENTS_PER_ENDPOINT = 10
AUDIT_EVENTS = 100_000
GOAL_P95_MS = 50.0
SECRET = "benchmark-secret-key-that-is-long-enough-for-production"  # noqa: S105 - a throwaway database
PASSWORD = "benchmark password"  # noqa: S105 - a throwaway user
CHUNK = 5_000


def _endpoints(now: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "name": f"endpoint-{n:04d}",
            "service": "demo",
            "resource": "demo-cpu" if n % 2 else "demo-gpu",
            "compute": "cpu" if n % 2 else "gpu",
            "gpus": [] if n % 2 else ["ADA_24"],
            "instance_ids": ["cpu3c-1-2"] if n % 2 else [],
            "workers_max": 3,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(1, ENDPOINTS + 1)
    ]


def _deployments(now: Any) -> list[dict[str, Any]]:
    rows = []
    for endpoint in range(1, ENDPOINTS + 1):
        for n in range(DEPLOYMENTS_PER_ENDPOINT):
            at = now - timedelta(minutes=DEPLOYMENTS_PER_ENDPOINT - n)
            rows.append(
                {
                    "endpoint_id": endpoint,
                    "environment": "production" if n % 2 else "staging",
                    "status": "ready"
                    if n == DEPLOYMENTS_PER_ENDPOINT - 1
                    else "deleted"
                    if n % 3
                    else "failed",
                    "action": "deploy",
                    "external_id": f"ep-{endpoint}-{n}",
                    "url": f"http://localhost:8800/ep-{endpoint}-{n}",
                    "log": [f"step {k}" for k in range(5)],
                    "config": {"workersMax": 3},
                    "created_by": "bench",
                    "created_at": at,
                    "updated_at": at,
                    "finished_at": at,
                }
            )
    return rows


def _audit(now: Any) -> list[dict[str, Any]]:
    pick = random.Random(7)
    return [
        {
            "at": now - timedelta(seconds=AUDIT_EVENTS - n),
            "user_id": 1,
            "username": "bench",
            "action": pick.choice(("create", "update", "deploy", "scale")),
            "target_type": "endpoint",
            "target_id": pick.randint(1, ENDPOINTS),
            "target_name": "endpoint",
            "changes": {"workersMax": [1, 3]},
        }
        for n in range(AUDIT_EVENTS)
    ]


async def seed(url: str) -> None:
    """Migrate and fill the database."""
    await asyncio.to_thread(command.upgrade, alembic_config(url, KeyRing(SECRET)), "head")
    engine = create_engine(url)
    now = utc_now()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(User), [{"id": 1, "username": "bench", "password_hash": hash_password(PASSWORD)}]
            )
            await connection.execute(insert(Endpoint), _endpoints(now))
            for rows in (_deployments(now), _audit(now)):
                table = Deployment if "environment" in rows[0] else AuditEvent
                for start in range(0, len(rows), CHUNK):
                    await connection.execute(insert(table), rows[start : start + CHUNK])
            if engine.dialect.name == "postgresql":
                for name in ("endpoints", "deployments", "audit_events"):
                    await connection.exec_driver_sql(f"ANALYZE {name}")
    finally:
        await engine.dispose()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(settings: DashboardSettings, requests: int) -> dict[str, tuple[float, float]]:
    """p50/p95 (ms) of each page, after a warm-up round."""
    app = create_app(settings)
    pick = random.Random(11)
    pages: dict[str, Callable[[], str]] = {
        "endpoint list": lambda: "/endpoints",
        "endpoint list, page 10": lambda: "/endpoints?page=10",
        "endpoint detail": lambda: f"/endpoints/{pick.randint(1, ENDPOINTS)}",
        "environment history": lambda: f"/endpoints/{pick.randint(1, ENDPOINTS)}/environments/production",
        "audit log": lambda: "/audit",
        "audit log, deep page": lambda: f"/audit?before={pick.randint(1_000, AUDIT_EVENTS)}",
        "import preview (cached discovery)": lambda: "/import",
    }
    results: dict[str, tuple[float, float]] = {}
    async with app.test_app() as test_app:
        client = test_app.test_client()
        page = await client.get("/login")
        token = (await page.get_data(as_text=True)).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        login = await client.post(
            "/login", form={"username": "bench", "password": PASSWORD, "csrf_token": token}
        )
        assert login.status_code == 303, login.status_code
        for name, path in pages.items():
            timings = []
            for n in range(requests + 5):
                started = time.perf_counter()
                response = await client.get(path())
                await response.get_data()
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (name, response.status_code)
                if n >= 5:  # the first requests warm caches (discovery, templates, the pool)
                    timings.append(elapsed)
            results[name] = (statistics.median(timings), _percentile(timings, 0.95))
    return results


async def run_on(database: str, requests: int, base: Path) -> dict[str, tuple[float, float]]:
    """Seed and measure one database kind ('sqlite' or 'postgresql')."""
    project = write_demo_project(base / "project", broken=False)
    admin = postgres_admin_url()
    url = (
        f"sqlite:///{base / 'bench.sqlite3'}"
        if database == "sqlite"
        else await create_scratch_database(admin)
    )
    try:
        started = time.perf_counter()
        await seed(url)
        print(f"{database}: seeded in {time.perf_counter() - started:.1f} s", flush=True)
        settings = DashboardSettings(
            secret_key=SECRET,
            data_dir=base / "data",
            database_url=url,
            project_dir=project,
            secure_cookies=False,
        )
        return await measure(settings, requests)
    finally:
        if database == "postgresql":
            await drop_scratch_database(admin, url)


def report(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A Markdown table: page, then p50/p95 per database, then whether every p95 meets the goal."""
    databases = list(results)
    lines = [
        "| page | "
        + " | ".join(f"{db} p50 / p95 (ms)" for db in databases)
        + f" | p95 <= {GOAL_P95_MS:g} ms |",
        "| --- | " + " | ".join("---:" for _ in databases) + " | --- |",
    ]
    for page in next(iter(results.values())):
        cells = [f"{results[db][page][0]:.1f} / {results[db][page][1]:.1f}" for db in databases]
        ok = all(results[db][page][1] <= GOAL_P95_MS for db in databases)
        lines.append(f"| {page} | " + " | ".join(cells) + f" | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: seed, measure, print (and write) the table; exit 1 if a p95 misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page (default 40)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    results = {}
    for database in [d.strip() for d in args.databases.split(",") if d.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"dashboard-scale-{database}-") as scratch:
            results[database] = asyncio.run(run_on(database, args.requests, Path(scratch)))
    table = (
        f"{ENDPOINTS} endpoints, {ENDPOINTS * DEPLOYMENTS_PER_ENDPOINT} deployments, "
        f"{AUDIT_EVENTS} audit events; {args.requests} requests per page (in-process ASGI)\n\n"
        + report(results)
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0 if all(p95 <= GOAL_P95_MS for pages in results.values() for _, p95 in pages.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
