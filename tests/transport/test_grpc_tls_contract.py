"""The gRPC transport under mutual TLS passes the transport contract too.

The contract's messages are not numbered for a job, so these endpoints are built without
one (no replay checks); ``test_grpc_tls.py`` covers the job-bound checks."""

from __future__ import annotations

from typing import Any

from consortium.security import Authority, PartyCredentials
from consortium.testing import TransportContract
from consortium.transport import Endpoint, GrpcHub, GrpcSpoke

_AUTHORITY = Authority.create("contract CA")


class TestGrpcTlsContract(TransportContract):
    def _tls(self, name: str) -> PartyCredentials:
        return _AUTHORITY.issue(name)

    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        hub_name, *spokes = names
        hub = GrpcHub(party=hub_name, peers=names, tls=self._tls(hub_name), **opts)
        made: dict[str, Endpoint] = {hub_name: hub}
        try:
            for name in spokes:
                made[name] = GrpcSpoke(
                    party=name,
                    peers=names,
                    hub=hub.address,
                    tls=self._tls(name),
                    hub_party=hub_name,
                    **opts,
                )
            hub.wait_for(spokes, timeout=30)
        except BaseException:
            for endpoint in reversed(list(made.values())):
                endpoint.close()
            raise
        return made

    def reconnect(self, endpoints: dict[str, Endpoint], name: str) -> Endpoint:
        hub = next(ep for ep in endpoints.values() if isinstance(ep, GrpcHub))
        return GrpcSpoke(  # a fresh certificate for the same identity
            party=name,
            peers=list(endpoints),
            hub=hub.address,
            tls=self._tls(name),
            hub_party=hub.party,
        )
