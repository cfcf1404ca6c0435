"""The golden test's worker shapes, for `podroute serve` on any server.

`golden` serves every route shape; `gated` holds its start-up until the file named by
`PODROUTE_TEST_RELEASE_FILE` exists; `broken` fails its start-up hook.
"""

from __future__ import annotations

from podroute import CpuLiveLoadBalancer
from tests.support.golden_routes import declare_routes
from tests.support.startup import add_model_loader

golden = CpuLiveLoadBalancer(name="golden")
gated = CpuLiveLoadBalancer(name="gated")
broken = CpuLiveLoadBalancer(name="broken")

for _resource in (golden, gated, broken):
    declare_routes(_resource)

add_model_loader(gated, wait=True, fail=False)
add_model_loader(broken, wait=False, fail=True)
