"""Desired vs actual: what a record says is deployed, compared with what the provider runs.

`reconcile` is pure (no I/O): the CLI (`podroute deploy status`) and the dashboard's periodic sync
call it with their records and the provider's `list_endpoints()`.

- *drift*: a recorded endpoint serves other values than the record stores, field by field
  (scaling, `executionTimeoutMs`, env keys, build, compute fields the provider reports);
- *orphans*: endpoints carrying this project's marker for this environment that no record knows;
- *missing*: records whose endpoint the provider no longer has.

Endpoints without the marker, or marked for another project or environment, never appear.
`apply_stored` and `adopt_serving` are the two ways to end a drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from podroute.deploy.model import (
    ActualEndpoint,
    Drift,
    FieldDrift,
    Reconciliation,
    RecordedDeployment,
)
from podroute.providers.base import DeployError, Provider

COMPARED_FIELDS = (
    "workersMin",
    "workersMax",
    "idleTimeout",
    "scalerValue",
    "executionTimeoutMs",
    "env_keys",
    "build",
    "image",
    "gpus",
    "gpuCount",
    "instanceIds",
    "flashboot",
    "locations",
)
"""The fields drift is looked for in (each only when both sides know it)."""


def stored_fields(record: RecordedDeployment) -> dict[str, Any]:
    """The record's values under the names `ActualEndpoint.serving` uses."""
    values = {key: value for key, value in record.config.items() if key in COMPARED_FIELDS}
    if "env" in record.config:
        values["env_keys"] = sorted(record.config["env"])
    if record.build:
        values["build"] = record.build
    return values


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return sorted(str(item) for item in value)
    return value


def compare_fields(stored: Mapping[str, Any], serving: Mapping[str, Any]) -> tuple[FieldDrift, ...]:
    """Every compared field whose stored and serving values differ (fields one side lacks are skipped)."""
    return tuple(
        FieldDrift(name=name, stored=stored[name], serving=serving[name])
        for name in COMPARED_FIELDS
        if name in stored and name in serving and _normal(stored[name]) != _normal(serving[name])
    )


def reconcile(
    project: str,
    environment: str,
    records: Iterable[RecordedDeployment],
    actual: Iterable[ActualEndpoint],
) -> Reconciliation:
    """Compare the records of one environment with the provider's endpoints (see the module doc)."""
    ours = {
        endpoint.id: endpoint
        for endpoint in actual
        if (target := endpoint.target) is not None
        and target.project == project
        and target.environment == environment
    }
    result = Reconciliation()
    known: set[str] = set()
    for record in records:
        if record.target.project != project or record.target.environment != environment:
            continue
        if not record.endpoint_id:
            continue
        known.add(record.endpoint_id)
        endpoint = ours.get(record.endpoint_id)
        if endpoint is None:
            result.missing.append(record.target)
            continue
        fields = compare_fields(stored_fields(record), endpoint.serving)
        if fields:
            result.drift.append(Drift(target=record.target, endpoint_id=endpoint.id, fields=fields))
    result.orphans = [endpoint for endpoint_id, endpoint in ours.items() if endpoint_id not in known]
    return result


def records_from_provider(endpoints: Iterable[ActualEndpoint]) -> list[RecordedDeployment]:
    """Records as the provider itself keeps them: each marked endpoint's serving release config with
    its recorded overrides on top (what the CLI, which keeps no record of its own, reconciles)."""
    records = []
    for endpoint in endpoints:
        target = endpoint.target
        if target is None or endpoint.release is None:
            continue
        config = {**endpoint.release.config, **endpoint.overrides}
        records.append(
            RecordedDeployment(
                target=target, endpoint_id=endpoint.id, config=config, build=endpoint.release.build
            )
        )
    return records


def apply_stored(provider: Provider, drift: Drift) -> ActualEndpoint:
    """End a drift by serving the stored values again (scaling fields apply at once).

    Fields outside the provider's scaling fields (env keys, build, compute) need a new release:
    DeployError says so, naming them, so the caller deploys instead.
    """
    scaling = {f.name: int(f.stored) for f in drift.fields if f.name in provider.scaling_fields}
    other = [f.name for f in drift.fields if f.name not in provider.scaling_fields]
    if other:
        raise DeployError(
            f"{drift.target.key} in {drift.target.environment}: {', '.join(other)} can only change with "
            "a new release; deploy the target again to serve the stored values"
        )
    return provider.scale(drift.endpoint_id, scaling, record=False)


def adopt_serving(provider: Provider, drift: Drift) -> ActualEndpoint:
    """End a drift by making the serving scaling values the desired ones (recorded as overrides).

    For fields outside the scaling fields the record itself has to take the serving values; this
    returns the endpoint so the caller can store `endpoint.serving`.
    """
    scaling = {f.name: int(f.serving) for f in drift.fields if f.name in provider.scaling_fields}
    if scaling:
        return provider.scale(drift.endpoint_id, scaling, record=True)
    return provider.status(drift.endpoint_id)
