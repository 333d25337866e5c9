"""Mutual TLS for the gRPC transport: credentials from a party's certificates, the
authenticated identity of a peer, and dialling that tells a refused certificate from a hub
that is not up yet.

Both ends present a certificate signed by the federation's CA and check the other's
against it (the hub requires a client certificate), so a party with a certificate from any
other CA is refused during the TLS handshake, before a byte of ours is read. A spoke checks
that the hub's certificate names the hub party (the TLS server name is the party name, not
a host name, so certificates need no addresses). The hub takes each spoke's identity from
its verified certificate and holds the hello to it (see :mod:`grpc_hub`).
"""

from __future__ import annotations

import re
import time
from typing import Any

import grpc

from consortium.errors import TransportError
from consortium.security import PartyCredentials
from consortium.transport.grpc_common import METHOD

__all__ = ["dial", "hub_channel", "peer_identities", "server_credentials", "status"]

# A method the hub does not serve: a hub that accepted the connection answers UNIMPLEMENTED.
_PROBE = METHOD.rsplit("/", 1)[0] + "/Probe"
# How gRPC describes a connection refused at the TLS layer (ours or theirs): permanent, so
# the spoke fails at once instead of retrying until its deadline. "Socket closed": the hub
# dropped the connection in the handshake (it did not accept this party's certificate, or
# one side speaks TLS and the other does not).
_TLS_FAILURE = re.compile(r"handshake|ssl|tls|certificate|verif|socket closed", re.IGNORECASE)
_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # nobody answered


def server_credentials(creds: PartyCredentials) -> grpc.ServerCredentials:
    """The hub's side: present its certificate, require and verify the spoke's."""
    return grpc.ssl_server_credentials(
        [(creds.key, creds.certificate)], root_certificates=creds.ca, require_client_auth=True
    )


def hub_channel(
    address: str, creds: PartyCredentials, hub_party: str, options: list[tuple[str, Any]]
) -> grpc.Channel:
    """A spoke's side: a channel that presents its certificate and accepts only a hub whose
    certificate the CA signed for ``hub_party``."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=creds.ca, private_key=creds.key, certificate_chain=creds.certificate
    )
    options = [*options, ("grpc.ssl_target_name_override", hub_party)]
    return grpc.secure_channel(address, credentials, options=options)


def peer_identities(context: Any) -> frozenset[str] | None:
    """The names the peer's verified certificate speaks for (its DNS subject alternative
    names, else its common name); None on a connection without TLS."""
    names = context.peer_identities()
    if names is None:
        return None
    return frozenset(n.decode("utf-8", "replace") for n in names)


def status(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    """The code and details of a failed call (no code, and the text, when gRPC gives none)."""
    if isinstance(exc, grpc.Call):
        return exc.code(), exc.details() or ""
    return None, str(exc)


def _probe(channel: grpc.Channel, timeout: float, *, wait: bool) -> tuple[Any, str]:
    try:
        channel.unary_unary(_PROBE)(b"", timeout=max(timeout, 0.001), wait_for_ready=wait)
    except grpc.RpcError as exc:
        return status(exc)
    return grpc.StatusCode.OK, ""


def dial(channel: grpc.Channel, *, party: str, hub: str, timeout: float, secure: bool) -> None:
    """Return once the hub at ``hub`` has accepted a connection on ``channel``.

    Raises :class:`TransportError` at once when the connection is refused at the TLS layer,
    and after ``timeout`` seconds when nothing answers (a hub may start after its spokes).
    No polling: the first attempt fails fast, the second waits for the channel to be ready.
    """
    deadline = time.monotonic() + timeout
    code, details = _probe(channel, timeout, wait=False)
    if code not in _DOWN:
        return  # the hub answered (UNIMPLEMENTED, as a rule)
    _check_refused(code, details, party=party, hub=hub, secure=secure)
    if _probe(channel, deadline - time.monotonic(), wait=True)[0] not in _DOWN:
        return
    code, last = _probe(channel, 1.0, wait=False)  # why it is still failing, if it says
    _check_refused(code, last, party=party, hub=hub, secure=secure)
    raise TransportError(
        f"{party!r} could not reach the hub at {hub} within {timeout:g} s; is the hub running, "
        f"and is the address right? (last error: {last or details})"
    )


def _check_refused(code: Any, details: str, *, party: str, hub: str, secure: bool) -> None:
    """Raise :class:`TransportError` if the connection was refused at the TLS layer."""
    if code is not grpc.StatusCode.UNAVAILABLE or not _TLS_FAILURE.search(details):
        return
    if secure:
        advice = (
            "are both certificates issued by the federation's CA, does the hub's name the "
            "hub party, and does the hub use TLS too?"
        )
    else:
        advice = "the hub uses TLS: give this party its certificate and key"
    raise TransportError(f"{party!r} was refused by the hub at {hub}: {details}; {advice}")
