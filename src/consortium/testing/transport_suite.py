"""The contract every transport must pass, as a pytest base class.

Subclass :class:`TransportContract` in a test module and implement :meth:`make_endpoints`
and :meth:`reconnect`; pytest then runs every ``test_*`` below against that transport::

    class TestInproc(TransportContract):
        def make_endpoints(self, names, **opts):
            network = InprocNetwork()
            return {name: network.endpoint(name) for name in names}

The first name given to ``make_endpoints`` is the hub for hub-and-spoke transports; the
rest are spokes. ``opts`` are hints an implementation may ignore (``chunk_bytes``: cut
messages into frames of about this size). Endpoints are closed after each test. Threads a
transport starts should be named ``consortium-...``, so the thread-leak check can see them.

The suite waits with generous deadlines and never asserts on elapsed time.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from consortium.errors import TransportClosed, TransportError, TransportTimeout
from consortium.transport.base import PEER_BACK, PEER_LOST, Endpoint
from consortium.wire import ALLOWED_DTYPES, Message

__all__ = ["TransportContract", "assert_same_message"]

WAIT_S = 30.0  # a deadline for things that should happen promptly; never reached if healthy
HUB, S1, S2, S3 = "hub", "spoke-1", "spoke-2", "spoke-3"
Connect = Callable[..., dict[str, Endpoint]]


def assert_same_message(got: Message, sent: Message) -> None:
    """``got`` carries exactly what ``sent`` did: envelope, metadata, tensor bits."""
    for field in ("kind", "sender", "receiver", "job", "round", "seq"):
        assert getattr(got, field) == getattr(sent, field), field
    assert dict(got.meta) == dict(sent.meta)
    for key, value in sent.meta.items():
        assert type(got.meta[key]) is type(value), key  # True must not come back as 1
    assert set(got.tensors) == set(sent.tensors)
    for name, want in sent.tensors.items():
        have = got.tensors[name]
        assert have.dtype == want.dtype, name  # byte order included
        assert have.shape == want.shape, name
        assert np.ascontiguousarray(have).tobytes() == np.ascontiguousarray(want).tobytes(), name


def _tensors(seed: int) -> dict[str, np.ndarray]:
    """One tensor of every wire dtype with random bits, plus awkward shapes and layouts."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, code in enumerate(sorted(ALLOWED_DTYPES)):
        dtype = np.dtype(code)
        shape = (2, 3, 5)[: i % 4]  # 0-d, 1-d, 2-d and 3-d in turn
        count = math.prod(shape)
        if dtype.kind == "b":
            out[code] = rng.integers(0, 2, size=shape).astype(dtype)
        else:  # every bit pattern: NaN payloads, -0.0, subnormals, extremes
            raw = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
            out[code] = raw.view(dtype).reshape(shape)
    out["empty"] = np.zeros((0,), dtype="<f4")
    out["empty-3d"] = np.zeros((3, 0, 2), dtype="<i8")
    out["scalar"] = np.array(7.5)
    grid = np.arange(48, dtype="<f8").reshape(6, 8)
    out["strided"] = grid[::2, 1::3]
    out["fortran"] = np.asfortranarray(grid)
    return out


_META: dict[str, Any] = {
    "text": "naïve ✓",
    "empty": "",
    "int": -7,
    "big": 2**62,
    "float": 0.1,
    "inf": float("inf"),
    "yes": True,
    "no": False,
}


class TransportContract:
    """Tests every :class:`~consortium.transport.Endpoint` implementation must pass."""

    def make_endpoints(self, names: list[str], **opts: Any) -> dict[str, Endpoint]:
        """Connected endpoints for ``names`` (the first is the hub, if there is one)."""
        raise NotImplementedError

    def reconnect(self, endpoints: dict[str, Endpoint], name: str) -> Endpoint:
        """A new endpoint for ``name`` (not the hub), whose endpoint in ``endpoints`` (made
        by :meth:`make_endpoints`) was closed: the party is back in the same federation."""
        raise NotImplementedError

    @pytest.fixture
    def connect(self) -> Iterator[Connect]:
        made: list[dict[str, Endpoint]] = []

        def connect(*names: str, **opts: Any) -> dict[str, Endpoint]:
            made.append(self.make_endpoints(list(names), **opts))
            return made[-1]

        yield connect
        for endpoints in made:
            for endpoint in reversed(list(endpoints.values())):
                endpoint.close()

    def test_endpoints_satisfy_the_protocol(self, connect: Connect) -> None:
        eps = connect(HUB, S1)
        for name, endpoint in eps.items():
            assert isinstance(endpoint, Endpoint)
            assert endpoint.party == name

    # -- content -----------------------------------------------------------------------

    @pytest.mark.parametrize(("src", "dst"), [(HUB, S1), (S1, HUB), (S1, S2), (HUB, HUB), (S2, S2)])
    def test_every_dtype_and_shape_round_trips_exactly(
        self, connect: Connect, src: str, dst: str
    ) -> None:
        eps = connect(HUB, S1, S2)
        sent = Message(
            kind="fit",
            sender=src,
            receiver=dst,
            job="job-1",
            round=3,
            seq=2**40,
            meta=_META,
            tensors=_tensors(seed=len(src) + len(dst)),
        )
        eps[src].send(sent)
        assert_same_message(eps[dst].recv(timeout=WAIT_S), sent)

    def test_spoke_to_spoke_and_back(self, connect: Connect) -> None:
        eps = connect(HUB, S1, S2)
        ask = Message(kind="ask", sender=S1, receiver=S2, tensors={"x": np.arange(5)})
        eps[S1].send(ask)
        got = eps[S2].recv(timeout=WAIT_S)
        assert_same_message(got, ask)
        answer = got.reply("answer", tensors={"y": np.asarray(got.tensors["x"]) * 2})
        eps[S2].send(answer)
        assert_same_message(eps[S1].recv(timeout=WAIT_S), answer)

    def test_order_per_sender_is_kept_under_concurrent_senders(self, connect: Connect) -> None:
        names = [HUB, S1, S2, S3]
        eps = connect(*names)
        count = 60
        errors: list[BaseException] = []

        def blast(src: str) -> None:
            try:
                for seq in range(count):
                    for dst in names:
                        if dst != src:
                            tensors = {"seq": np.full(seq % 5, seq, dtype="<i8")}
                            msg = Message(
                                kind="n", sender=src, receiver=dst, seq=seq, tensors=tensors
                            )
                            eps[src].send(msg)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=blast, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for dst in names:
            seen: dict[str, list[int]] = {src: [] for src in names if src != dst}
            for _ in range(count * (len(names) - 1)):
                msg = eps[dst].recv(timeout=WAIT_S)
                assert np.all(np.asarray(msg.tensors["seq"]) == msg.seq)
                seen[msg.sender].append(msg.seq)
            assert seen == {src: list(range(count)) for src in seen}
        for t in threads:
            t.join(WAIT_S)
        assert not errors, errors

    def test_a_large_message_arrives_intact(self, connect: Connect) -> None:
        eps = connect(HUB, S1, S2, chunk_bytes=16 * 2**10)  # ~3,000 frames per hop
        big = np.arange(50 * 10**6 // 8, dtype="<f8")
        for src, dst in [(S1, HUB), (HUB, S2), (S1, S2)]:
            eps[src].send(Message(kind="model", sender=src, receiver=dst, tensors={"w": big}))
            eps[src].send(Message(kind="after", sender=src, receiver=dst))
            got = eps[dst].recv(timeout=WAIT_S)
            assert got.kind == "model" and np.array_equal(got.tensors["w"], big)
            assert eps[dst].recv(timeout=WAIT_S).kind == "after"

    # -- errors ------------------------------------------------------------------------

    @pytest.mark.parametrize("who", [HUB, S1])
    def test_recv_times_out(self, connect: Connect, who: str) -> None:
        eps = connect(HUB, S1)
        with pytest.raises(TransportTimeout):
            eps[who].recv(timeout=0.05)

    @pytest.mark.parametrize("who", [HUB, S1])
    def test_close_unblocks_a_waiting_recv(self, connect: Connect, who: str) -> None:
        eps = connect(HUB, S1)
        raised: list[BaseException] = []

        def wait() -> None:
            try:
                eps[who].recv()
            except BaseException as exc:
                raised.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        eps[who].close()
        waiter.join(WAIT_S)
        assert not waiter.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], TransportClosed)

    @pytest.mark.parametrize("who", [HUB, S1])
    def test_closed_endpoint_refuses_work_and_closes_twice(
        self, connect: Connect, who: str
    ) -> None:
        eps = connect(HUB, S1)
        other = S1 if who == HUB else HUB
        eps[who].close()
        eps[who].close()
        with pytest.raises(TransportClosed):
            eps[who].recv(timeout=0.05)
        with pytest.raises(TransportClosed):
            eps[who].send(Message(kind="x", sender=who, receiver=other))

    @pytest.mark.parametrize("who", [HUB, S1])
    def test_unknown_receiver_is_refused(self, connect: Connect, who: str) -> None:
        eps = connect(HUB, S1)
        with pytest.raises(TransportError, match="nobody"):
            eps[who].send(Message(kind="x", sender=who, receiver="nobody"))

    @pytest.mark.parametrize("who", [HUB, S1])
    def test_spoofed_sender_is_refused(self, connect: Connect, who: str) -> None:
        eps = connect(HUB, S1, S2)
        with pytest.raises(TransportError):
            eps[who].send(Message(kind="x", sender=S2, receiver=HUB if who == S1 else S1))

    # -- departures --------------------------------------------------------------------

    @pytest.mark.parametrize(("leaver", "stayer"), [(S1, HUB), (S1, S2), (HUB, S1)])
    def test_a_party_that_closes_is_reported_to_whom_it_talked_to(
        self, connect: Connect, leaver: str, stayer: str
    ) -> None:
        eps = connect(HUB, S1, S2)
        eps[leaver].send(Message(kind="hi", sender=leaver, receiver=stayer))
        assert eps[stayer].recv(timeout=WAIT_S).kind == "hi"
        eps[stayer].send(Message(kind="hi", sender=stayer, receiver=leaver))
        assert eps[leaver].recv(timeout=WAIT_S).kind == "hi"
        eps[leaver].close()
        lost = eps[stayer].recv(timeout=WAIT_S)
        assert (lost.kind, lost.sender, lost.receiver) == (PEER_LOST, leaver, stayer)
        if stayer == HUB:
            with pytest.raises(TransportClosed):
                eps[HUB].send(Message(kind="late", sender=HUB, receiver=leaver))

    @pytest.mark.parametrize("stayer", [HUB, S2])
    def test_a_party_that_comes_back_is_announced_and_reachable(
        self, connect: Connect, stayer: str
    ) -> None:
        eps = connect(HUB, S1, S2)
        eps[S1].send(Message(kind="hi", sender=S1, receiver=stayer))
        assert eps[stayer].recv(timeout=WAIT_S).kind == "hi"
        eps[S1].close()
        lost = eps[stayer].recv(timeout=WAIT_S)
        assert (lost.kind, lost.sender) == (PEER_LOST, S1)
        eps[S1] = self.reconnect(eps, S1)  # the fixture closes it
        back = eps[stayer].recv(timeout=WAIT_S)
        assert (back.kind, back.sender, back.receiver) == (PEER_BACK, S1, stayer)
        eps[stayer].send(Message(kind="again", sender=stayer, receiver=S1))
        assert eps[S1].recv(timeout=WAIT_S).kind == "again"
        eps[S1].send(Message(kind="again", sender=S1, receiver=stayer))
        assert eps[stayer].recv(timeout=WAIT_S).kind == "again"

    def test_closing_leaves_no_threads_behind(self) -> None:
        before = set(threading.enumerate())
        eps = self.make_endpoints([HUB, S1, S2])
        try:
            for src, dst in itertools.permutations(eps, 2):
                eps[src].send(Message(kind="x", sender=src, receiver=dst))
            for ep in eps.values():
                for _ in range(len(eps) - 1):
                    ep.recv(timeout=WAIT_S)
        finally:
            for ep in reversed(list(eps.values())):
                ep.close()
        left = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and (not t.daemon or t.name.startswith("consortium"))
        ]
        assert not left, left
