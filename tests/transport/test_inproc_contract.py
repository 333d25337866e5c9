"""The in-process transport passes the transport contract."""

from __future__ import annotations

from typing import Any

from consortium.testing import TransportContract
from consortium.transport import PEER_LOST, Endpoint, InprocNetwork
from consortium.wire import Message


class TestInprocContract(TransportContract):
    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        network = InprocNetwork()
        return {name: network.endpoint(name) for name in names}


def test_a_party_that_leaves_unread_tells_those_who_wrote_to_it():
    """A hub that fails before reading anything must not leave its peers waiting."""
    network = InprocNetwork()
    hub, member = network.endpoint("hub"), network.endpoint("member")
    member.send(Message(kind="party.join", sender="member", receiver="hub"))
    hub.close()
    lost = member.recv(timeout=5.0)
    assert (lost.kind, lost.sender) == (PEER_LOST, "hub")
