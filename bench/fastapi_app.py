"""The CPU service's handlers on FastAPI, the stack Flash workers run (served by plain uvicorn).

    python -m uvicorn bench.fastapi_app:app --host 127.0.0.1 --port PORT --timeout-keep-alive 600

Bodies are pydantic models, as in the handler `flash build` generates; a ValueError is a 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.cpu.endpoint import cpu_health, transform_text, validate_text

app = FastAPI()


class ValidateBody(BaseModel):
    """The body of POST /validate."""

    text: str


class TransformBody(BaseModel):
    """The body of POST /transform."""

    text: str
    operation: str


@app.get("/health", response_model=None)
async def health() -> Any:
    """GET /health."""
    return await cpu_health()


@app.post("/validate", response_model=None)
async def validate(body: ValidateBody) -> Any:
    """POST /validate."""
    return await validate_text(body.text)


@app.post("/transform", response_model=None)
async def transform(body: TransformBody) -> Any:
    """POST /transform."""
    return await transform_text(body.text, body.operation)


@app.exception_handler(ValueError)
async def bad_request(request: Request, error: ValueError) -> JSONResponse:
    """A ValueError from a handler is the caller's fault: 400."""
    return JSONResponse({"detail": str(error)}, status_code=400)
