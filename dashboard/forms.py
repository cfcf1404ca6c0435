"""The endpoint form: parse what the browser posted, validate it with podroute, map problems to fields.

The form only turns strings into the shapes the resource takes (lists, a bool, a dict of env) and
enforces storage limits (column sizes), the service (one of the project's) and the image reference.
Every rule about what a valid config is lives in `podroute.resources`; its
`ResourceConfigError.problems` become the inline field errors, reworded in the form's labels
("Min workers", not `workersMin`; never a raw pydantic sentence). All problems are reported at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from dashboard.configs import FIELD_LABELS, EndpointDraft, field_map, resource_class
from dashboard.images import IMAGE_REFERENCE
from dashboard.models import ENV_KEY_MAX, ENV_VALUE_MAX, IMAGE_MAX, NAME_MAX, SERVICE_MAX, Endpoint, EnvVar
from podroute.resources import DEFAULT_VOLUME_MOUNT_PATH, FieldProblem, ResourceConfigError

MAX_ENV_ROWS = 100
"""Environment rows read from one form (more are ignored and reported)."""

BLANK_ENV_ROWS = 2
"""Empty rows offered for new variables."""

INT_MAX = 2_147_483_647
"""The largest whole number the database columns store."""

TEXT_LIMITS: dict[str, int] = {
    "name": NAME_MAX,
    "service": SERVICE_MAX,
    "resource": NAME_MAX,
    "imageName": IMAGE_MAX,
    "minCudaVersion": 10,
    "networkVolumeId": SERVICE_MAX,
    "volumeMountPath": SERVICE_MAX,
}
INT_FIELDS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs", "gpuCount")
LIST_FIELDS = ("gpus", "instanceIds", "locations")
DASHBOARD_FIELDS = ("service", "resource", "compute")
"""Form fields the library never sees (its problems name Flash fields, or 'resource' for the whole)."""
LIST_LIMIT = 64
LIST_ITEM_LIMIT = 100


FormData = MultiDict[str, str]
"""What a request form is (werkzeug's MultiDict)."""


@dataclass
class EnvRow:
    """One row of the environment table. A stored secret's value is never put back in a row."""

    key: str = ""
    value: str = ""
    secret: bool = False
    stored_secret: bool = False


@dataclass
class EndpointForm:
    """What the endpoint form shows: values as typed, env rows, and errors beside each field."""

    values: dict[str, Any]
    env_rows: list[EnvRow]
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    form_errors: list[str] = field(default_factory=list)
    version: int | None = None

    @property
    def compute(self) -> str:
        """'gpu' or 'cpu' (what the GPU/CPU fieldsets show)."""
        return "cpu" if self.values.get("compute") == "cpu" else "gpu"

    @property
    def invalid_fields(self) -> list[str]:
        """The labels of the fields that have an error, in the form's order."""
        order = list(FIELD_LABELS)
        names = sorted(
            (n for n, m in self.errors.items() if m), key=lambda n: order.index(n) if n in order else 99
        )
        return [FIELD_LABELS.get(name, name) for name in names]

    @property
    def has_errors(self) -> bool:
        """True when any field or the form as a whole has an error."""
        return bool(self.form_errors) or any(self.errors.values())

    def add_error(self, name: str, message: str) -> None:
        """Record an error beside field `name`."""
        self.errors[name].append(message)

    @classmethod
    def blank(cls, compute: str = "gpu") -> EndpointForm:
        """A new endpoint's form, pre-filled with the library's defaults for `compute`."""
        defaults = resource_class(compute).model_fields
        values: dict[str, Any] = {"compute": compute, "service": "", "resource": ""}
        for flash in {**field_map("gpu"), **field_map("cpu")}:
            spec = (
                defaults.get(flash)
                or resource_class("cpu" if compute == "gpu" else "gpu").model_fields[flash]
            )
            default = spec.get_default(call_default_factory=True)
            values[flash] = _display(default)
        values["name"] = ""
        return cls(values, [EnvRow() for _ in range(BLANK_ENV_ROWS)])

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> EndpointForm:
        """The edit form of a stored endpoint; secret values are left out."""
        form = cls.blank(endpoint.compute)
        form.values.update(service=endpoint.service, resource=endpoint.resource, compute=endpoint.compute)
        for flash, column in field_map(endpoint.compute).items():
            form.values[flash] = _display(getattr(endpoint, column))
        form.env_rows = [_row_of(var) for var in endpoint.env_vars] + [
            EnvRow() for _ in range(BLANK_ENV_ROWS)
        ]
        form.version = endpoint.version
        return form


def _display(value: Any) -> Any:
    if isinstance(value, bool | list):
        return value
    return "" if value is None else str(value)


def _row_of(var: EnvVar) -> EnvRow:
    if var.secret:
        return EnvRow(key=var.key, value="", secret=True, stored_secret=True)
    return EnvRow(key=var.key, value=var.value, secret=False)


def _text(form: EndpointForm, data: FormData, name: str) -> str:
    raw = data.get(name, "")
    value = raw.strip() if isinstance(raw, str) else ""
    form.values[name] = value
    limit = TEXT_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        form.values[name] = value[:limit]
        form.add_error(name, f"is {len(value)} characters long; use at most {limit}")
    return value


def _int_text(form: EndpointForm, data: FormData, name: str) -> str:
    value = _text(form, data, name)
    if len(value) > 12 or (value.lstrip("-").isdigit() and abs(int(value)) > INT_MAX):
        form.values[name] = value[:12]
        form.add_error(name, f"is too large; use a whole number up to {INT_MAX}")
    return value


def _list(form: EndpointForm, data: FormData, name: str) -> list[str]:
    items = [item.strip() for item in data.getlist(name) if isinstance(item, str) and item.strip()]
    if len(items) > LIST_LIMIT or any(len(item) > LIST_ITEM_LIMIT for item in items):
        form.add_error(
            name, f"choose at most {LIST_LIMIT} values of at most {LIST_ITEM_LIMIT} characters each"
        )
        items = [item[:LIST_ITEM_LIMIT] for item in items[:LIST_LIMIT]]
    form.values[name] = items
    return items


_ENV_INDEX = re.compile(r"^env-(\d{1,3})-key$")


def _env_indexes(data: FormData) -> list[int]:
    return sorted({int(m.group(1)) for k in data if (m := _ENV_INDEX.match(k))})


def _parse_env(
    form: EndpointForm, data: FormData, stored: Mapping[str, EnvVar]
) -> tuple[dict[str, str], set[str]]:
    env: dict[str, str] = {}
    secrets: set[str] = set()
    indexes = _env_indexes(data)
    if len(indexes) > MAX_ENV_ROWS:
        form.add_error("env", f"at most {MAX_ENV_ROWS} variables per endpoint")
        indexes = indexes[:MAX_ENV_ROWS]
    rows: list[EnvRow] = []
    for index in indexes:
        row = _parse_env_row(form, data, index, stored)
        if row is None:
            continue
        rows.append(row)
        if row.key in env:
            form.add_error("env", f"variable {row.key!r} appears more than once; keep one")
            continue
        env[row.key] = row.value
        if row.secret:
            secrets.add(row.key)
    form.env_rows = [_masked(row) for row in rows] + [EnvRow() for _ in range(BLANK_ENV_ROWS)]
    return env, secrets


def _parse_env_row(
    form: EndpointForm, data: FormData, index: int, stored: Mapping[str, EnvVar]
) -> EnvRow | None:
    key = str(data.get(f"env-{index}-key", "")).strip()
    value = str(data.get(f"env-{index}-value", ""))
    secret = data.get(f"env-{index}-secret") in ("on", "true", "1")
    if not key:
        if value:
            form.add_error("env", "a variable has a value but no name; give it a name or clear the value")
        return None
    if len(key) > ENV_KEY_MAX or len(value) > ENV_VALUE_MAX:
        form.add_error("env", f"names are limited to {ENV_KEY_MAX} and values to {ENV_VALUE_MAX} characters")
        return EnvRow(key=key[:ENV_KEY_MAX], secret=secret)
    previous = stored.get(key)
    if previous is not None and previous.secret and value == "":
        if not secret:
            form.add_error("env", f"to make {key!r} non-secret, enter its new value")
        return EnvRow(key=key, value=previous.value, secret=True, stored_secret=True)
    return EnvRow(key=key, value=value, secret=secret)


def _masked(row: EnvRow) -> EnvRow:
    if row.secret:
        return EnvRow(key=row.key, value="", secret=True, stored_secret=row.stored_secret)
    return row


def _field_of(problem: FieldProblem, known: Iterable[str]) -> list[str]:
    known = list(known)
    head = problem.field.split(".", 1)[0]
    named = [name for name in known if re.search(rf"\b{re.escape(name)}\b", problem.message)]
    if head in known:
        return [head, *(name for name in named if name != head)]
    return named


_PYDANTIC_WORDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^Input should be a valid integer.*$", re.S), "must be a whole number"),
    (re.compile(r"^Input should be a valid number.*$", re.S), "must be a number"),
    (re.compile(r"^Input should be a valid boolean.*$", re.S), "must be on or off"),
    (re.compile(r"^Input should be a valid (list|array).*$", re.S), "must be a list of values"),
    (re.compile(r"^Input should be a valid string.*$", re.S), "must be text"),
    (re.compile(r"^Input should be greater than or equal to (\S+)$"), r"must be \1 or more"),
    (re.compile(r"^Input should be greater than (\S+)$"), r"must be more than \1"),
    (re.compile(r"^Input should be less than or equal to (\S+)$"), r"must be \1 or less"),
    (re.compile(r"^Input should be less than (\S+)$"), r"must be less than \1"),
    (re.compile(r"^String should have at most (\d+) characters?$"), r"use at most \1 characters"),
    (re.compile(r"^String should have at least (\d+) characters?$"), r"use at least \1 characters"),
    (re.compile(r"^Field required$"), "is required"),
    (re.compile(r"^Extra inputs are not permitted$"), "is not a field of this resource"),
    (re.compile(r"^(?:Input|Value|String) should (.*)$", re.S), r"must \1"),
]
"""pydantic's generic sentences, reworded for a form (the field's label is beside them)."""

_CAMEL_FIELDS = [name for name in FIELD_LABELS if name != name.lower()]


def humanize_message(message: str) -> str:
    """A library problem in the form's words: pydantic phrasing reworded, Flash field names
    (`workersMin`) replaced by their labels ("Min workers")."""
    for pattern, words in _PYDANTIC_WORDS:
        if pattern.match(message):
            message = pattern.sub(words, message)
            break
    for name in _CAMEL_FIELDS:
        message = re.sub(rf"\b{name}\b", FIELD_LABELS[name], message)
    return message


def add_problems(form: EndpointForm, problems: Iterable[FieldProblem]) -> None:
    """Put the library's problems (in the form's words) beside the fields they name; the rest
    above the form.

    A problem about several fields at once (like workersMin > workersMax, which the library
    reports on workersMax) is also shown beside every other field its message names.
    """
    known = [name for name in FIELD_LABELS if name not in DASHBOARD_FIELDS]
    for problem in problems:
        fields = _field_of(problem, known)
        message = humanize_message(problem.message)
        for name in fields:
            form.add_error(name, message)
        if not fields:
            form.form_errors.append(message)


def _check_service(form: EndpointForm, service: str, services: Sequence[str]) -> None:
    choices = ", ".join(services) or "none yet: add services/<name>/endpoint.py"
    if not service:
        form.add_error("service", f"choose the service that holds this endpoint's code ({choices})")
    elif service not in services:
        form.add_error("service", f"there is no service {service!r} in the project: choose one of {choices}")


def _check_image(form: EndpointForm, image: str) -> None:
    if image and IMAGE_REFERENCE.match(image) is None:
        form.add_error(
            "imageName",
            f"{image!r} is not an image reference: use [registry/]name[:tag][@sha256:digest], lowercase, "
            "without spaces or a scheme (or leave it empty for the image the build makes)",
        )


def parse_endpoint_form(
    data: FormData, stored_env: Mapping[str, EnvVar] | None = None, services: Sequence[str] | None = None
) -> tuple[EndpointForm, EndpointDraft | None]:
    """Read the posted form; return it (for redisplay) and the validated draft, or None on errors.

    Every problem is reported at once: the form's own checks and the library's. `services`, when
    given, are the project's services; the form's service must be one of them.
    """
    form = EndpointForm({}, [])
    compute = str(data.get("compute", "")).strip()
    form.values["compute"] = compute
    if compute not in ("gpu", "cpu"):
        form.add_error("compute", "choose GPU or CPU")
        form.values["compute"] = compute = "gpu"
    fields: dict[str, Any] = {}
    service = _text(form, data, "service")
    if services is not None:
        _check_service(form, service, services)
    resource_name = _text(form, data, "resource")
    for name in ("name", "imageName", "networkVolumeId", *(["minCudaVersion"] if compute == "gpu" else [])):
        fields[name] = _text(form, data, name)
    fields["volumeMountPath"] = _text(form, data, "volumeMountPath") or DEFAULT_VOLUME_MOUNT_PATH
    for name in INT_FIELDS:
        if name != "gpuCount" or compute == "gpu":
            fields[name] = _int_text(form, data, name)
    for name in LIST_FIELDS:
        if name == "locations" or (name == "gpus") == (compute == "gpu"):
            fields[name] = _list(form, data, name)
    fields["flashboot"] = form.values["flashboot"] = data.get("flashboot") in ("on", "true", "1")
    fields["env"], secrets = _parse_env(form, data, stored_env or {})
    _check_image(form, fields["imageName"])
    version = str(data.get("version", "")).strip()
    form.version = int(version) if version.isdigit() and len(version) < 10 else None
    already = {name for name, messages in form.errors.items() if messages}
    try:
        resource = resource_class(compute)(**{k: v for k, v in fields.items() if k not in already})
    except ResourceConfigError as error:
        # A field the form already refused is left out: the library's "required" about it is noise.
        add_problems(form, [p for p in error.problems if p.field.split(".", 1)[0] not in already])
        return form, None
    if form.has_errors:
        return form, None
    return form, EndpointDraft(resource, service, resource_name or resource.name, secrets)
