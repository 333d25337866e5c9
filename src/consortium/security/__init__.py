"""Security helpers below the transport: the federation's certificates (a CA and one
certificate per party, for mutual TLS) and replay protection for received messages."""

from consortium.security.certs import (
    CA_CERT,
    CA_KEY,
    Authority,
    PartyCredentials,
    TlsFiles,
    check_party_name,
    identities,
)
from consortium.security.replay import DEFAULT_WINDOW, ReplayGuard

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_WINDOW",
    "Authority",
    "PartyCredentials",
    "ReplayGuard",
    "TlsFiles",
    "check_party_name",
    "identities",
]
