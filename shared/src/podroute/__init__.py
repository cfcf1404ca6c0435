"""PodRoute: async Python functions as load-balanced HTTP routes of serverless endpoints.

from podroute import CpuLiveLoadBalancer, remote

api = CpuLiveLoadBalancer(name="text")

@remote(api, method="POST", path="/upper")
async def upper(text: str) -> dict:
    if not text:
        raise ValueError("text must not be empty")   # -> 400 problem+json
    return {"text": text.upper()}
"""

from typing import TYPE_CHECKING, Any

from podroute.binding import accepts
from podroute.errors import HTTPError
from podroute.params import LastEventId, Startup
from podroute.registry import (
    Registry,
    Route,
    RouteDeclarationError,
    current_registry,
    on_startup,
    remote,
    use_registry,
)
from podroute.resources import (
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    LiveLoadBalancer,
    LoadBalancerSlsResource,
    Resource,
    ResourceConfigError,
)
from podroute.secrets import Secret
from podroute.settings import AppSettings, ServerSettings
from podroute.sockets import WebSocket, WebSocketClosedError
from podroute.sse import ServerSentEvent
from podroute.state import Mount

if TYPE_CHECKING:
    from podroute.app import create_app

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `create_app` imports Quart; a worker (`podroute serve`) serves its routes without it.
    if name == "create_app":
        from podroute.app import create_app

        return create_app
    raise AttributeError(f"module 'podroute' has no attribute {name!r}")


__all__ = [
    "AppSettings",
    "CpuLiveLoadBalancer",
    "CpuLoadBalancerSlsResource",
    "HTTPError",
    "LastEventId",
    "LiveLoadBalancer",
    "LoadBalancerSlsResource",
    "Mount",
    "Registry",
    "Resource",
    "ResourceConfigError",
    "Route",
    "RouteDeclarationError",
    "Secret",
    "ServerSentEvent",
    "ServerSettings",
    "Startup",
    "WebSocket",
    "WebSocketClosedError",
    "__version__",
    "accepts",
    "create_app",
    "current_registry",
    "on_startup",
    "remote",
    "use_registry",
]
