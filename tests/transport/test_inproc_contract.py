"""The in-process transport passes the transport contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from consortium.testing import TransportContract
from consortium.transport import PEER_LOST, Endpoint, InprocEndpoint, InprocNetwork
from consortium.wire import Message


class TestInprocContract(TransportContract):
    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        network = InprocNetwork()
        return {name: network.endpoint(name) for name in names}

    def reconnect(self, endpoints: dict[str, Endpoint], name: str) -> Endpoint:
        old = endpoints[name]
        assert isinstance(old, InprocEndpoint)
        return old.network.endpoint(name)


def test_a_party_that_leaves_unread_tells_those_who_wrote_to_it():
    """A hub that fails before reading anything must not leave its peers waiting."""
    network = InprocNetwork()
    hub, member = network.endpoint("hub"), network.endpoint("member")
    member.send(Message(kind="party.join", sender="member", receiver="hub"))
    hub.close()
    lost = member.recv(timeout=5.0)
    assert (lost.kind, lost.sender) == (PEER_LOST, "hub")


def test_tensors_arrive_read_only_and_the_senders_arrays_stay_writable():
    """Zero copy, but no party can change another's arrays through a message."""
    network = InprocNetwork()
    a, b = network.endpoint("a"), network.endpoint("b")
    mine = np.arange(6, dtype=np.float32)
    frozen = np.ones(3)
    frozen.flags.writeable = False
    tensors = {"mine": mine, "frozen": frozen, "listed": [1.0, 2.0], "buffer": memoryview(b"ab")}
    a.send(Message(kind="k", sender="a", receiver="b", round=3, seq=7, tensors=tensors))
    got = b.recv(timeout=5.0)
    assert (got.kind, got.sender, got.receiver, got.round, got.seq) == ("k", "a", "b", 3, 7)
    assert list(got.tensors) == ["mine", "frozen", "listed", "buffer"]
    for name, arr in got.tensors.items():
        assert isinstance(arr, np.ndarray) and not arr.flags.writeable, name
    assert got.tensors["frozen"] is frozen  # already read-only: passed as it is
    np.testing.assert_array_equal(got.tensors["mine"], mine)
    np.testing.assert_array_equal(got.tensors["listed"], [1.0, 2.0])
    assert mine.flags.writeable and tensors["mine"] is mine  # the sender's side is untouched
    with pytest.raises(ValueError, match="read-only"):
        got.tensors["mine"][0] = 1.0


def test_a_message_of_read_only_arrays_is_delivered_as_it_is():
    network = InprocNetwork()
    a, b = network.endpoint("a"), network.endpoint("b")
    frozen = np.ones(3)
    frozen.flags.writeable = False
    sent = Message(kind="k", sender="a", receiver="b", tensors={"w": frozen})
    a.send(sent)
    assert b.recv(timeout=5.0) is sent
