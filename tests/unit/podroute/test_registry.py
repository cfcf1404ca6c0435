"""`@remote` declaration rules: everything wrong fails at decoration, naming the function."""

from __future__ import annotations

import asyncio

import pytest

from podroute import CpuLiveLoadBalancer, Registry, RouteDeclarationError, on_startup, remote, use_registry

api = CpuLiveLoadBalancer(name="api")


async def sample(text: str) -> dict[str, str]:
    return {"text": text}


def test_returns_the_function_unchanged_and_records_the_route(registry: Registry) -> None:
    decorated = remote(api, method="post", path="/echo")(sample)
    assert decorated is sample
    (route,) = registry.routes(api)
    assert (route.method, route.path, route.name, route.function) == ("POST", "/echo", "sample", sample)
    assert asyncio.run(decorated("hi")) == {"text": "hi"}


@pytest.mark.parametrize(
    "path", ["/ping", "/execute", "/_runpod/sync", "/ping/", "/execute/", "/_runpod/sync/"]
)
def test_reserved_paths_rejected(registry: Registry, path: str) -> None:
    with pytest.raises(RouteDeclarationError, match=r"sample: path .* is reserved"):
        remote(api, method="GET", path=path)(sample)


def test_paths_that_only_start_like_reserved_ones_are_fine(registry: Registry) -> None:
    remote(api, method="GET", path="/pinger")(sample)
    assert registry.routes(api)[0].path == "/pinger"


def test_duplicate_route_names_both_functions(registry: Registry) -> None:
    remote(api, method="POST", path="/x")(sample)

    async def other(text: str) -> None: ...

    with pytest.raises(RouteDeclarationError, match=r"other: POST /x is already declared by sample"):
        remote(api, method="POST", path="/x")(other)


def test_same_path_other_method_is_fine(registry: Registry) -> None:
    remote(api, method="POST", path="/x")(sample)

    async def read() -> None: ...

    remote(api, method="GET", path="/x")(read)
    assert [r.method for r in registry.routes(api)] == ["POST", "GET"]


def test_unknown_method(registry: Registry) -> None:
    with pytest.raises(
        RouteDeclarationError, match=r"sample: method 'FETCH' is not supported; use one of GET"
    ):
        remote(api, method="FETCH", path="/x")(sample)


def test_path_must_start_with_slash(registry: Registry) -> None:
    with pytest.raises(
        RouteDeclarationError, match=r"sample: path 'users' must start with '/', e.g. '/users'"
    ):
        remote(api, method="GET", path="users")(sample)


def test_path_parameter_needs_a_function_parameter(registry: Registry) -> None:
    with pytest.raises(RouteDeclarationError, match=r"sample: path '/u/\{user_id\}' has \{user_id\}"):
        remote(api, method="GET", path="/u/{user_id}")(sample)


def test_unknown_keyword_arguments(registry: Registry) -> None:
    with pytest.raises(TypeError, match="unknown keyword argument.*timeout"):
        remote(api, method="GET", path="/x", timeout=3)


def test_star_arguments_cannot_be_bound(registry: Registry) -> None:
    async def spread(**kwargs: str) -> None: ...

    with pytest.raises(RouteDeclarationError, match=r"spread: \*kwargs"):
        remote(api, method="POST", path="/x")(spread)


def test_needs_a_resource(registry: Registry) -> None:
    with pytest.raises(TypeError, match="load-balanced resource"):
        remote("api", method="GET", path="/x")  # type: ignore[arg-type]


def test_bad_characters_in_path(registry: Registry) -> None:
    with pytest.raises(RouteDeclarationError, match="not allowed"):
        remote(api, method="GET", path="/a b")(sample)


def test_two_different_resources_with_one_name_clash(registry: Registry) -> None:
    remote(api, method="GET", path="/x")(sample)

    async def other() -> None: ...

    with pytest.raises(RouteDeclarationError, match="another resource named 'api'"):
        remote(CpuLiveLoadBalancer(name="api", workersMax=5), method="GET", path="/y")(other)


def test_registries_are_isolated() -> None:
    first, second = Registry(), Registry()
    with use_registry(first):
        remote(api, method="GET", path="/x")(sample)
    with use_registry(second):
        assert len(second) == 0
    assert len(first.routes(api)) == 1


def test_startup_hooks_recorded(registry: Registry) -> None:
    @on_startup(api)
    def load_model() -> None: ...

    assert registry.entry(api).startup_hooks == [load_model]


def test_unknown_resource_lookup_names_known_ones(registry: Registry) -> None:
    remote(api, method="GET", path="/x")(sample)
    with pytest.raises(KeyError, match="known: api"):
        registry.routes("other")
