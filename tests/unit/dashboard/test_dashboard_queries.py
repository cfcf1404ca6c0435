"""Query functions and operations on a real SQLite file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dashboard.configs import EndpointDraft
from dashboard.models import Deployment, utc_now
from dashboard.operations import (
    LiveDeploymentsError,
    TargetTakenError,
    create_endpoint,
    delete_endpoint,
    update_endpoint,
)
from dashboard.queries import (
    add_user,
    count_users,
    endpoint_status,
    find_endpoint_for_code,
    get_endpoint,
    get_user_by_name,
    list_audit_events,
    list_endpoints,
)
from podroute.resources import CpuLoadBalancerSlsResource, LoadBalancerSlsResource


def gpu(name: str, **fields) -> EndpointDraft:
    return EndpointDraft(LoadBalancerSlsResource(name=name, **fields), "svc", name)


async def test_users(session):
    assert await count_users(session) == 0
    user = await add_user(session, "alice", "hash")
    assert (await get_user_by_name(session, "alice")).id == user.id
    assert await get_user_by_name(session, "bob") is None
    assert await count_users(session) == 1


async def test_list_search_escapes_wildcards_and_filters_by_status(session):
    first = await create_endpoint(session, None, gpu("alpha_1"))
    await create_endpoint(session, None, gpu("beta", imageName="registry/alpha:1"))
    await create_endpoint(
        session, None, EndpointDraft(CpuLoadBalancerSlsResource(name="gamma"), "other", "gamma")
    )
    assert [r.endpoint.name for r in await list_endpoints(session)] == ["alpha_1", "beta", "gamma"]
    assert [r.endpoint.name for r in await list_endpoints(session, "ALPHA")] == ["alpha_1", "beta"]
    assert [r.endpoint.name for r in await list_endpoints(session, "a_1")] == ["alpha_1"]
    assert await list_endpoints(session, "%") == []
    session.add(
        Deployment(endpoint_id=first.id, status="failed", created_at=utc_now() - timedelta(minutes=1))
    )
    session.add(Deployment(endpoint_id=first.id, status="ready", created_at=utc_now()))
    await session.flush()
    assert [r.endpoint.name for r in await list_endpoints(session, status="ready")] == ["alpha_1"]
    assert len(await list_endpoints(session, status="not deployed")) == 2
    assert await endpoint_status(session, first.id) == "ready"


async def test_find_endpoint_for_code_prefers_service_and_resource(session):
    renamed = await create_endpoint(
        session, None, EndpointDraft(LoadBalancerSlsResource(name="prod-x"), "svc", "x")
    )
    with pytest.raises(TargetTakenError, match="already deployed by the endpoint config 'prod-x'"):
        await create_endpoint(session, None, gpu("x"))  # a second config of svc/x
    await create_endpoint(session, None, EndpointDraft(LoadBalancerSlsResource(name="x"), "", ""))
    assert (await find_endpoint_for_code(session, "svc", "x")).id == renamed.id
    assert (await find_endpoint_for_code(session, "nowhere", "x")).name == "x"
    assert await find_endpoint_for_code(session, "nowhere", "y") is None


async def test_update_bumps_the_version_only_when_something_changed(session):
    endpoint = await create_endpoint(session, None, gpu("api", workersMax=2))
    assert await update_endpoint(session, None, endpoint, gpu("api", workersMax=2), 1) == {}
    assert endpoint.version == 1
    changes = await update_endpoint(session, None, endpoint, gpu("api", workersMax=5), 1)
    assert changes == {"workersMax": [2, 5]} and endpoint.version == 2
    assert [e.action for e in await list_audit_events(session)] == ["update", "create"]


async def test_delete_removes_env_and_deployments(session):
    endpoint = await create_endpoint(session, None, gpu("api", env={"A": "1"}))
    session.add(Deployment(endpoint_id=endpoint.id, status="ready", external_id="ep-1"))
    await session.flush()
    with pytest.raises(
        LiveDeploymentsError, match=r"still deployed in production \(endpoint ep-1\)"
    ) as refused:
        await delete_endpoint(session, None, endpoint)
    assert [row.external_id for row in refused.value.live] == ["ep-1"]
    session.add(Deployment(endpoint_id=endpoint.id, status="deleted", action="undeploy", external_id="ep-1"))
    await session.flush()
    await delete_endpoint(session, None, endpoint)
    await session.commit()
    assert await get_endpoint(session, endpoint.id) is None
    assert (await session.scalars(select(Deployment))).all() == []
    assert (await list_audit_events(session))[0].action == "delete"


async def test_audit_paging_and_target_filter(session):
    first = await create_endpoint(session, None, gpu("one"))
    await create_endpoint(session, None, gpu("two"))
    newest = await list_audit_events(session, limit=1)
    older = await list_audit_events(session, limit=5, before_id=newest[0].id)
    assert [e.target_name for e in newest + older] == ["two", "one"]
    assert [e.target_name for e in await list_audit_events(session, target_id=first.id)] == ["one"]
