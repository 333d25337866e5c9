"""The gRPC transport (hub and spokes on loopback) passes the transport contract."""

from __future__ import annotations

from typing import Any

from consortium.testing import TransportContract
from consortium.transport import Endpoint, GrpcHub, GrpcSpoke


class TestGrpcContract(TransportContract):
    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        hub_name, *spokes = names
        hub = GrpcHub(party=hub_name, peers=names, **opts)
        made: dict[str, Endpoint] = {hub_name: hub}
        try:
            for name in spokes:
                made[name] = GrpcSpoke(party=name, peers=names, hub=hub.address, **opts)
            hub.wait_for(spokes, timeout=30)
        except BaseException:
            for endpoint in reversed(list(made.values())):
                endpoint.close()
            raise
        return made

    def reconnect(self, endpoints: dict[str, Endpoint], name: str) -> Endpoint:
        hub = next(ep for ep in endpoints.values() if isinstance(ep, GrpcHub))
        return GrpcSpoke(party=name, peers=list(endpoints), hub=hub.address)
