"""Parsing the endpoint form; every validity rule comes from podroute's resources."""

from __future__ import annotations

import re

import pytest
from werkzeug.datastructures import MultiDict

from dashboard.forms import EndpointForm, add_problems, humanize_message, parse_endpoint_form
from dashboard.models import Endpoint, EnvVar
from podroute.resources import FieldProblem, LoadBalancerSlsResource, ResourceConfigError

BASE = {
    "name": "api",
    "service": "demo",
    "resource": "",
    "compute": "gpu",
    "gpus": "ADA_24",
    "gpuCount": "2",
    "minCudaVersion": "12.8",
    "workersMin": "1",
    "workersMax": "3",
    "idleTimeout": "30",
    "scalerValue": "2",
    "executionTimeoutMs": "1000",
    "flashboot": "on",
    "env-0-key": "MODE",
    "env-0-value": "fast",
}


def form(**overrides: str | list[str] | None) -> MultiDict[str, str]:
    data = MultiDict(BASE)
    for key, value in overrides.items():
        data.poplist(key)
        if isinstance(value, list):
            data.setlist(key, value)
        elif value is not None:
            data[key] = value
    return data


def test_a_valid_form_becomes_the_library_resource():
    parsed, draft = parse_endpoint_form(form())
    assert not parsed.has_errors and draft is not None
    assert isinstance(draft.resource, LoadBalancerSlsResource)
    assert draft.resource.model_dump(include={"gpus", "gpuCount", "workersMax", "flashboot", "env"}) == {
        "gpus": ["ADA_24"],
        "gpuCount": 2,
        "workersMax": 3,
        "flashboot": True,
        "env": {"MODE": "fast"},
    }
    assert (draft.service, draft.resource_name) == ("demo", "api")


def test_the_draft_equals_what_the_library_builds_itself():
    _, draft = parse_endpoint_form(form())
    direct = LoadBalancerSlsResource(
        name="api",
        gpus=["ADA_24"],
        gpuCount=2,
        minCudaVersion="12.8",
        workersMin=1,
        workersMax=3,
        idleTimeout=30,
        scalerValue=2,
        executionTimeoutMs=1000,
        flashboot=True,
        env={"MODE": "fast"},
        imageName="",
        locations=[],
        networkVolumeId="",
    )
    assert draft is not None and draft.resource == direct


@pytest.mark.parametrize(
    "overrides",
    [
        {"workersMin": "-1"},
        {"idleTimeout": "4000"},
        {"scalerValue": "0"},
        {"gpuCount": "0"},
        {"name": "bad name"},
        {"minCudaVersion": "12"},
        {"gpus": ["TPU"]},
        {"executionTimeoutMs": "-5"},
        {"env-0-key": "9LIVES"},
        {"locations": ["NOWHERE"]},
        {"workersMax": "x"},
    ],
)
def test_errors_are_exactly_the_library_problems(overrides):
    parsed, draft = parse_endpoint_form(form(**overrides))
    assert draft is None
    fields = {k: v for k, v in form(**overrides).to_dict(flat=False).items()}
    with pytest.raises(ResourceConfigError) as caught:
        LoadBalancerSlsResource(
            name=fields["name"][0],
            gpus=fields.get("gpus", ["ANY"]),
            gpuCount=fields["gpuCount"][0],
            minCudaVersion=fields["minCudaVersion"][0],
            workersMin=fields["workersMin"][0],
            workersMax=fields["workersMax"][0],
            idleTimeout=fields["idleTimeout"][0],
            scalerValue=fields["scalerValue"][0],
            executionTimeoutMs=fields["executionTimeoutMs"][0],
            env={fields["env-0-key"][0]: "fast"},
            locations=fields.get("locations", []),
        )
    expected = {humanize_message(p.message) for p in caught.value.problems}
    shown = {m for messages in parsed.errors.values() for m in messages}
    assert shown == expected
    assert not any("Input should" in m or re.search(r"\b[a-z]+[A-Z]\w*\b", m) for m in shown), shown


def test_cross_field_problem_goes_beside_each_named_field():
    parsed, _ = parse_endpoint_form(form(workersMin="4", workersMax="2"))
    message = "Min workers (4) must not exceed Max workers (2): lower Min workers or raise Max workers"
    assert parsed.errors["workersMin"] == [message] and parsed.errors["workersMax"] == [message]
    assert parsed.form_errors == []


def test_a_problem_naming_no_field_goes_above_the_form():
    parsed = EndpointForm({}, [])
    add_problems(parsed, [FieldProblem("resource", "something about the whole config")])
    assert parsed.form_errors == ["something about the whole config"] and not any(parsed.errors.values())


def test_cpu_forms_ignore_gpu_fields_and_use_cpu_rules():
    _, draft = parse_endpoint_form(form(compute="cpu", instanceIds=["cpu3c-1-2"], gpus=["NOT_CHECKED"]))
    assert draft is not None and draft.compute == "cpu"
    assert draft.resource.instanceIds == ["cpu3c-1-2"]  # type: ignore[attr-defined]
    parsed, bad = parse_endpoint_form(form(compute="cpu", instanceIds=["cpu9-1-1"]))
    assert bad is None and "unknown CPU instance id" in parsed.errors["instanceIds"][0]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"compute": "quantum"}, "compute", "choose GPU or CPU"),
        ({"imageName": "i" * 501}, "imageName", "use at most 500"),
        ({"workersMax": "1" * 13}, "workersMax", "too large"),
        ({"workersMax": "3000000000"}, "workersMax", "too large"),
        ({"gpus": ["x" * 101]}, "gpus", "at most 100 characters"),
        ({"env-1-key": "MODE", "env-1-value": "slow"}, "env", "appears more than once"),
        ({"env-1-key": "", "env-1-value": "orphan"}, "env", "has a value but no name"),
    ],
)
def test_form_level_limits(overrides, field, message):
    parsed, draft = parse_endpoint_form(form(**overrides))
    assert draft is None
    assert any(message in m for m in parsed.errors[field]), parsed.errors


def test_stored_secret_is_kept_when_left_blank_and_never_put_back_in_a_row():
    stored = {"TOKEN": EnvVar(key="TOKEN", value="hidden", secret=True)}
    parsed, draft = parse_endpoint_form(
        form(**{"env-1-key": "TOKEN", "env-1-value": "", "env-1-secret": "on"}), stored
    )
    assert draft is not None and draft.resource.env["TOKEN"] == "hidden" and draft.secret_keys == {"TOKEN"}
    token_row = next(r for r in parsed.env_rows if r.key == "TOKEN")
    assert token_row.value == "" and token_row.stored_secret


def test_a_new_secret_value_is_not_put_back_on_errors():
    parsed, draft = parse_endpoint_form(
        form(workersMin="9", **{"env-1-key": "TOKEN", "env-1-value": "typed-secret", "env-1-secret": "on"})
    )
    assert draft is None
    assert all(row.value != "typed-secret" for row in parsed.env_rows)


def test_edit_form_hides_secret_values():
    endpoint = Endpoint(
        compute="gpu",
        name="api",
        gpus=["ANY"],
        gpu_count=1,
        min_cuda_version="12.8",
        workers_min=0,
        workers_max=1,
        idle_timeout=60,
        scaler_value=4,
        execution_timeout_ms=0,
        flashboot=True,
        locations=[],
        network_volume_id="",
        image_name="",
        service="s",
        resource="api",
        instance_ids=[],
        version=3,
    )
    endpoint.env_vars = [
        EnvVar(key="A", value="visible", secret=False),
        EnvVar(key="B", value="hidden", secret=True),
    ]
    parsed = EndpointForm.from_endpoint(endpoint)
    rows = {row.key: row for row in parsed.env_rows if row.key}
    assert rows["A"].value == "visible" and rows["B"].value == "" and rows["B"].secret
    assert parsed.version == 3 and parsed.values["workersMax"] == "1"


def test_every_invalid_field_is_reported_at_once_in_the_labels_words():
    parsed, draft = parse_endpoint_form(
        form(name="n" * 64, gpuCount="1.5", workersMin="3", workersMax="1", imageName="Not An Image!"),
        services=["demo"],
    )
    assert draft is None
    assert parsed.invalid_fields == ["Name", "Image", "GPUs per worker", "Min workers", "Max workers"]
    assert parsed.errors["gpuCount"] == ["must be a whole number"]
    assert "use at most 63" in parsed.errors["name"][0]
    assert "is not an image reference" in parsed.errors["imageName"][0]
    shown = [m for messages in parsed.errors.values() for m in messages]
    assert not any("Input should" in m or "gpuCount" in m or "workersMin" in m for m in shown), shown


@pytest.mark.parametrize(
    ("service", "message"),
    [("", "choose the service that holds this endpoint's code (cpu, demo)"), ("ghost", "no service 'ghost'")],
)
def test_the_service_must_be_one_of_the_projects(service, message):
    parsed, draft = parse_endpoint_form(form(service=service), services=["cpu", "demo"])
    assert draft is None and message in parsed.errors["service"][0]
    assert parse_endpoint_form(form(service="demo"), services=["cpu", "demo"])[1] is not None


@pytest.mark.parametrize("image", ["ghcr.io/acme/api:1", "python", "localhost:5000/x/y@sha256:" + "a" * 64])
def test_valid_image_references_are_accepted(image):
    assert parse_endpoint_form(form(imageName=image))[1] is not None
