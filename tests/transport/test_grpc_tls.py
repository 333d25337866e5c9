"""The gRPC transport under mutual TLS, on loopback: who may join, who may speak as whom,
and what happens to replayed messages and messages of another job. Every refusal is logged
with its reason, and the hub (or spoke) goes on serving the others."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from consortium.errors import TransportError, TransportTimeout
from consortium.security import Authority, PartyCredentials
from consortium.transport import PEER_BACK, PEER_LOST, GrpcHub, GrpcSpoke
from consortium.transport.grpc_common import HELLO, METHOD, MIN_CHUNK_BYTES, roster_digest
from consortium.transport.grpc_framing import Assembler, iter_frames
from consortium.transport.grpc_security import hub_channel
from consortium.wire import Message, decode, encode_parts

HUB, S1, S2 = "hub", "spoke-1", "spoke-2"
NAMES = [HUB, S1, S2]
JOB = "tls-test:0123456789ab"
WAIT_S = 30.0
LOGGER = "consortium.transport"


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.create("federation CA")


@pytest.fixture(scope="module")
def creds(ca: Authority) -> dict[str, PartyCredentials]:
    return {name: ca.issue(name) for name in NAMES}


@pytest.fixture
def hub(creds) -> Iterator[GrpcHub]:
    endpoint = GrpcHub(party=HUB, peers=NAMES, tls=creds[HUB], job=JOB)
    yield endpoint
    endpoint.close()


@pytest.fixture
def dial(hub, creds) -> Iterator[Callable[..., GrpcSpoke]]:
    made: list[GrpcSpoke] = []

    def dial(name: str, **changes: Any) -> GrpcSpoke:
        options: dict[str, Any] = {
            "party": name,
            "peers": NAMES,
            "hub": hub.address,
            "tls": creds[name],
            "hub_party": HUB,
            "job": JOB,
            **changes,
        }
        made.append(GrpcSpoke(**options))
        return made[-1]

    yield dial
    for spoke in made:
        spoke.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return lambda: [r.getMessage() for r in caplog.records]


def msg(sender: str, receiver: str, seq: int, *, job: str = JOB, kind: str = "m") -> Message:
    return Message(kind=kind, sender=sender, receiver=receiver, job=job, seq=seq)


def frames_of(message: Message) -> list[bytes]:
    return list(iter_frames(*encode_parts(message), MIN_CHUNK_BYTES))


def hello(name: str, job: str = JOB) -> list[bytes]:
    meta = {"chunk_bytes": MIN_CHUNK_BYTES, "roster": roster_digest(NAMES)}
    return frames_of(Message(kind=HELLO, sender=name, receiver="", job=job, meta=meta))


def raw_stream(
    address: str, creds: PartyCredentials, frames: list[bytes]
) -> tuple[list[Message], grpc.RpcError | None]:
    """Play ``frames`` to the hub over mutual TLS with ``creds``; what came back, how it ended."""
    received: list[Message] = []
    assembler = Assembler(max_bytes=2**20)
    with hub_channel(address, creds, HUB, []) as channel:
        call = channel.stream_stream(METHOD)(iter(frames))
        try:
            for frame in call:
                if (buf := assembler.feed(frame)) is not None:
                    received.append(decode(buf))
        except grpc.RpcError as exc:
            return received, exc
    return received, None


def assert_served(hub: GrpcHub, spoke: GrpcSpoke, seq: int) -> None:
    """The hub and ``spoke`` still talk both ways (``seq``: the next number on each side)."""
    spoke.send(msg(spoke.party, HUB, seq, kind="ping"))
    got = hub.recv(timeout=WAIT_S)
    assert (got.kind, got.sender, got.seq) == ("ping", spoke.party, seq)
    hub.send(msg(HUB, spoke.party, seq, kind="pong"))
    got = spoke.recv(timeout=WAIT_S)
    assert (got.kind, got.seq) == ("pong", seq)


def assert_silent(endpoint: GrpcHub | GrpcSpoke) -> None:
    with pytest.raises(TransportTimeout):
        endpoint.recv(timeout=0.2)


# -- who may join ------------------------------------------------------------------------


def test_parties_with_certificates_from_the_federation_talk(hub, dial, logs):
    s1, s2 = dial(S1), dial(S2)
    assert_served(hub, s1, 1)
    s1.send(msg(S1, S2, 1, kind="relayed"))
    got = s2.recv(timeout=WAIT_S)
    assert (got.kind, got.sender, got.job, got.seq) == ("relayed", S1, JOB, 1)
    assert any("'spoke-2' connected" in m and "verified certificate" in m for m in logs())


def test_a_certificate_signed_by_another_ca_is_refused_at_connect(hub, dial, ca, logs):
    good = dial(S1)
    rogue = Authority.create("rogue CA").issue(S2)
    # It trusts our CA (so it accepts the hub), but the hub does not accept its certificate.
    presented = PartyCredentials(
        ca=ca.certificate_pem, certificate=rogue.certificate, key=rogue.key
    )
    with pytest.raises(TransportError, match="refused by the hub"):
        dial(S2, tls=presented)
    # Trusting only its own CA, it refuses the hub's certificate in turn.
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        dial(S2, tls=rogue)
    with pytest.raises(TransportTimeout):
        hub.wait_for([S2], timeout=0.2)
    assert not any("spoke-2" in m for m in logs())  # refused before a byte of ours was read
    assert_served(hub, good, 1)


_ROGUE_CHILD = """
import sys
from consortium.errors import TransportError
from consortium.security import Authority, PartyCredentials
from consortium.transport import GrpcSpoke
address, ca_pem, names = sys.argv[1], sys.argv[2].encode(), sys.argv[3].split(",")
rogue = Authority.create("rogue CA").issue("spoke-2")
creds = PartyCredentials(ca=ca_pem, certificate=rogue.certificate, key=rogue.key)
try:
    GrpcSpoke(party="spoke-2", peers=names, hub=address, tls=creds, hub_party="hub")
except TransportError as exc:
    sys.exit(f"refused: {exc}")
"""


def test_a_party_process_with_a_rogue_certificate_cannot_join(hub, dial, ca):
    good = dial(S1)
    ca_pem = ca.certificate_pem.decode()
    child = subprocess.run(
        [sys.executable, "-c", _ROGUE_CHILD, hub.address, ca_pem, ",".join(NAMES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 1, child.stderr
    assert "refused: 'spoke-2' was refused by the hub" in child.stderr
    assert_served(hub, good, 1)


def test_a_plain_text_party_cannot_join_a_tls_hub(hub, dial):
    good = dial(S1)
    with pytest.raises(TransportError, match="refused by the hub.*give this party its certificate"):
        dial(S2, tls=None, hub_party=None)
    assert_served(hub, good, 1)


def test_the_hub_must_hold_the_hub_partys_certificate(hub, creds):
    with pytest.raises(TransportError, match="Hostname Verification"):
        GrpcSpoke(party=S1, peers=NAMES, hub=hub.address, tls=creds[S1], hub_party=S2)


def test_a_hello_for_another_job_is_refused(hub, dial, logs):
    with pytest.raises(TransportError, match="runs job 'other:1', the hub runs"):
        dial(S1, job="other:1")
    assert any("runs job 'other:1'" in m for m in logs())
    assert_served(hub, dial(S1), 1)


# -- who may speak as whom ---------------------------------------------------------------


def test_a_party_claiming_another_partys_name_is_refused(hub, dial, creds, logs):
    good = dial(S2)
    received, error = raw_stream(hub.address, creds[S2], hello(S1))  # S2's cert says S1
    assert received == []
    assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "certificate is for ['spoke-2'] claimed to be 'spoke-1'" in error.details()
    assert any("claimed to be 'spoke-1'" in m for m in logs())
    assert_silent(hub)  # neither a message nor a departure: it never joined
    assert_served(hub, good, 1)
    assert_served(hub, dial(S1), 1)  # the real spoke-1 is still welcome


def test_a_message_under_another_senders_name_cuts_that_spoke_off(hub, dial, creds, logs):
    good = dial(S1)
    forged = msg(S1, HUB, 1, kind="forged")
    received, error = raw_stream(hub.address, creds[S2], [*hello(S2), *frames_of(forged)])
    assert [m.kind for m in received] in ([], ["transport.welcome"])
    assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
    lost = hub.recv(timeout=WAIT_S)  # the forged message never arrives; its sender leaves
    assert (lost.kind, lost.sender) == (PEER_LOST, S2)
    assert any("'spoke-2' sent as 'spoke-1'" in m for m in logs())
    assert_served(hub, good, 1)


def test_a_spoke_cannot_start_with_another_partys_certificate(hub, creds):
    with pytest.raises(
        TransportError, match=r"certificate is for \['spoke-2'\], not for 'spoke-1'"
    ):
        GrpcSpoke(party=S1, peers=NAMES, hub=hub.address, tls=creds[S2], hub_party=HUB)
    with pytest.raises(TransportError, match="not for the hub"):
        GrpcHub(party=HUB, peers=NAMES, tls=creds[S1])
    with pytest.raises(TransportError, match="hub_party"):
        GrpcSpoke(party=S1, peers=NAMES, hub=hub.address, tls=creds[S1])


# -- replays and other jobs --------------------------------------------------------------


def test_a_replayed_message_is_dropped_logged_and_its_sender_stays(hub, dial, logs):
    s1, s2 = dial(S1), dial(S2)
    first = msg(S1, HUB, 1, kind="update")
    s1.send(first)
    s1.send(first)  # the same message again
    s1.send(msg(S1, HUB, 2, kind="next"))
    assert [(m.kind, m.seq) for m in (hub.recv(WAIT_S), hub.recv(WAIT_S))] == [
        ("update", 1),
        ("next", 2),
    ]
    assert any(
        "dropped a 'update' message from 'spoke-1' to 'hub' (seq 1)" in m and "already" in m
        for m in logs()
    )
    # Relayed between spokes: the hub checks that channel too.
    s1.send(msg(S1, S2, 1, kind="relayed"))
    s1.send(msg(S1, S2, 1, kind="relayed"))
    s1.send(msg(S1, S2, 2, kind="after"))
    assert [(m.kind, m.seq) for m in (s2.recv(WAIT_S), s2.recv(WAIT_S))] == [
        ("relayed", 1),
        ("after", 2),
    ]
    assert any("from 'spoke-1' to 'spoke-2' (seq 1)" in m for m in logs())
    assert_silent(s2)
    assert_served(hub, s1, 3)
    assert_served(hub, s2, 1)


def test_a_message_for_another_job_is_dropped_and_logged(hub, dial, logs):
    s1, s2 = dial(S1), dial(S2)
    s1.send(msg(S1, HUB, 1, job="other:1", kind="stray"))
    s1.send(msg(S1, HUB, 2, kind="ours"))
    got = hub.recv(timeout=WAIT_S)
    assert (got.kind, got.seq) == ("ours", 2)
    assert any("'stray'" in m and "for job 'other:1'" in m for m in logs())
    assert_served(hub, s2, 1)


def test_the_spoke_drops_replays_and_other_jobs_too(hub, dial, logs):
    s1, s2 = dial(S1), dial(S2)
    hub.send(msg(HUB, S1, 1, kind="a"))
    hub.send(msg(HUB, S1, 1, kind="a"))
    hub.send(msg(HUB, S1, 2, job="other:1", kind="b"))
    hub.send(msg(HUB, S1, 0, kind="c"))  # not numbered
    hub.send(msg(HUB, S1, 3, kind="d"))
    assert [(m.kind, m.seq) for m in (s1.recv(WAIT_S), s1.recv(WAIT_S))] == [("a", 1), ("d", 3)]
    assert_silent(s1)
    spoke_logs = [m for m in logs() if m.startswith("'spoke-1' dropped")]
    assert len(spoke_logs) == 3, spoke_logs
    assert "already received" in spoke_logs[0] and "for job 'other:1'" in spoke_logs[1]
    assert "no sequence number" in spoke_logs[2]
    assert_served(hub, s2, 1)


def test_a_spoke_that_comes_back_numbers_from_one_again(hub, dial):
    first = dial(S1)
    first.send(msg(S1, HUB, 1))
    assert hub.recv(timeout=WAIT_S).seq == 1
    first.close()
    assert hub.recv(timeout=WAIT_S).kind == PEER_LOST
    again = dial(S1)
    assert hub.recv(timeout=WAIT_S).kind == PEER_BACK
    assert_served(hub, again, 1)
