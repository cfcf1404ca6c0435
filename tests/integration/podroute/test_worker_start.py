"""A worker starts without its web framework: `podroute serve` loads Quart only when a request needs it.

Deployed workers are billed from process start, and RunPod routes traffic to them once `/ping`
answers 200; Quart and what it pulls in (Werkzeug, Flask, Jinja, Hypercorn) were about half of a
worker's start-up. The worker app (`podroute.worker_app`) serves `/ping` and the `@remote` routes
on the lean path and builds Quart on the first request for `/docs`, `/openapi.json` or an unknown
path. The figures are in the bench (`nox -s bench`, cold start); these tests hold the behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx

from tests.helpers import REPO_ROOT, worker_process

CPU = "services.cpu.endpoint"
QUART_LOADED = "Quart loaded for the first request that needs it"


def _quart_loads(output: str) -> int:
    return sum(1 for line in output.splitlines() if QUART_LOADED in line)


def test_a_worker_answers_its_routes_before_loading_quart_and_its_docs_after() -> None:
    with worker_process(CPU, "uvicorn", {"LOG_LEVEL": "DEBUG", "PODROUTE_MAX_BODY_BYTES": "4096"}) as worker:
        with httpx.Client(base_url=worker.url, timeout=10) as client:
            assert client.get("/ping").json() == {"status": "healthy"}
            assert client.get("/health").json() == {"status": "healthy", "service": "cpu"}
            answer = client.post("/transform", json={"text": "ab", "operation": "uppercase"})
            assert answer.json()["transformed"] == "AB"
            invalid = client.post("/transform", json={"text": "ab"})
            assert invalid.status_code == 422
            assert invalid.json()["errors"][0]["loc"] == ["body", "operation"]
            assert (
                client.post(
                    "/validate", content=b"{", headers={"Content-Type": "application/json"}
                ).status_code
                == 400
            )
            assert client.post("/validate", content=b"x" * 5000).status_code == 413
            assert _quart_loads(worker.process.output_so_far()) == 0

            docs = client.get("/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text
            assert "/health" in client.get("/openapi.json").json()["paths"]
            missing = client.get("/no-such-route")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert "see /docs" in missing.json()["detail"]
            assert client.get("/health").status_code == 200
        assert _quart_loads(worker.process.output_so_far()) == 1


SERVE_PATH_WITHOUT_A_FRAMEWORK = textwrap.dedent(
    """
    import asyncio, json, sys
    import podroute, podroute.cli, podroute.server
    from podroute.discovery import load_target
    from podroute.worker_app import worker_app

    async def call(app, method, path, body=b"", headers=()):
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": [(b"content-type", b"application/json"), *headers],
                 "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1), "root_path": ""}
        sent = []
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        async def send(message):
            sent.append(message)
        await app(scope, receive, send)
        return sent[0]["status"]

    async def main():
        resource, registry = load_target("services.cpu.endpoint")
        app = worker_app(resource, registry)
        await app.lifecycle.start()
        statuses = [
            await call(app, "GET", "/ping"),
            await call(app, "GET", "/health"),
            await call(app, "POST", "/transform", b'{"text": "a", "operation": "reverse"}'),
            await call(app, "POST", "/transform", b'{"text": "a"}'),
            await call(app, "POST", "/validate", b"{"),
        ]
        frameworks = sorted({name.split(".")[0] for name in sys.modules}
                            & {"quart", "werkzeug", "flask", "jinja2", "hypercorn"})
        print(json.dumps({"statuses": statuses, "frameworks": frameworks}))

    asyncio.run(main())
    """
)


def test_the_serve_path_imports_no_web_framework() -> None:
    """Guards the import graph: a module on the lean path that imports Quart fails this test."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE_PATH_WITHOUT_A_FRAMEWORK],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {"statuses": [200, 200, 200, 422, 400], "frameworks": []}
