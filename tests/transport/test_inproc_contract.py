"""The in-process transport passes the transport contract."""

from __future__ import annotations

from typing import Any

from consortium.testing import TransportContract
from consortium.transport import Endpoint, InprocNetwork


class TestInprocContract(TransportContract):
    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        network = InprocNetwork()
        return {name: network.endpoint(name) for name in names}
