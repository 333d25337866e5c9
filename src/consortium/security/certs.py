"""Certificates of a federation: one certificate authority (CA), one certificate per party.

The federation's CA signs a certificate for each party whose subject alternative name (and
common name) is the party's name. Under mutual TLS the transport takes a party's identity
from its authenticated certificate, never from a field of a message.

The keys made here are ECDSA on P-256: quick to make (the ``processes`` launcher makes a CA
and a certificate per party for every run) and accepted by every TLS stack gRPC ships with.
Keys from an organisation's own PKI may also be RSA.
Private keys are written owner-only (``0600``), never over an existing file, and are not
shown by ``repr``. Chains are one level deep: a party's certificate is signed directly by
the CA (no intermediates).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortium.errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "Authority",
    "PartyCredentials",
    "TlsFiles",
    "check_party_name",
    "identities",
]

log = logging.getLogger(__name__)

CA_CERT, CA_KEY = "ca.crt", "ca.key"
_CURVE = ec.SECP256R1()  # 128-bit security; supported by BoringSSL (gRPC) and OpenSSL alike
_HASH = hashes.SHA256()
_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past: clocks drift
# A party name must fit a certificate: at most 64 characters (the X.509 bound on a common
# name), letters, digits, '_', '-' and inner '.', so it is also a valid TLS server name.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_-])?$")
_PRIVATE = 0o600  # owner read/write only
_PUBLIC = 0o644


def check_party_name(name: str) -> str:
    """``name`` if a certificate can carry it, else :class:`ConfigError` saying why."""
    if not _NAME.match(name) or name == "ca":
        raise ConfigError(
            f"{name!r} cannot name a party certificate: use 1 to 64 letters, digits, '_', '-' "
            "or inner '.', and not 'ca' (the authority's file name)"
        )
    return name


def identities(cert: x509.Certificate) -> frozenset[str]:
    """Who a certificate speaks for: its DNS subject alternative names, else its common name
    (the rule TLS stacks use, so gRPC's view of a peer and ours agree)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return frozenset(str(a.value) for a in values)
    return frozenset(san.value.get_values_for_type(x509.DNSName))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: _Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # the file's permissions protect it, as for SSH keys
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never widened later), refusing to
    replace an existing file or to follow a link planted in its place."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; remove it first to make a new one") from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # the umask may only have narrowed it; make it exact
        out.write(data)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _load_cert(data: bytes, source: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{source}: not a PEM certificate") from None


_Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _load_key(data: bytes, source: Path) -> _Key:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{source}: the key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{source}: not a PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{source}: expected an EC or RSA key, got {type(key).__name__}")
    return key


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where one party's TLS material lies: the CA certificate, its certificate, its key."""

    ca: Path
    cert: Path
    key: Path

    def load(self, party: str | None = None) -> PartyCredentials:
        """Read the files and check them: the certificate is signed by the CA, currently
        valid, matches the key, and (when ``party`` is given) names that party. Every
        problem is a :class:`ConfigError` naming the file."""
        ca_pem = _read(self.ca, "CA certificate")
        cert_pem = _read(self.cert, "certificate")
        key_pem = _read(self.key, "private key")
        ca = _load_cert(ca_pem, self.ca)
        cert = _load_cert(cert_pem, self.cert)
        key = _load_key(key_pem, self.key)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(f"{self.cert}: not issued by the CA in {self.ca}") from None
        now = _now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ConfigError(
                f"{self.cert}: valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; issue a new one"
            )
        if key.public_key() != cert.public_key():
            raise ConfigError(f"{self.key}: this key does not belong to {self.cert}")
        names = identities(cert)
        if party is not None and party not in names:
            raise ConfigError(
                f"{self.cert}: the certificate is for {sorted(names)}, not for party {party!r}"
            )
        mode = self.key.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "the private key %s can be read by others (mode %04o); run: chmod 600 %s",
                self.key,
                mode,
                self.key,
            )
        return PartyCredentials(ca=ca_pem, certificate=cert_pem, key=key_pem)


@dataclass(frozen=True, slots=True, repr=False)
class PartyCredentials:
    """What one party needs for mutual TLS, in PEM: the federation's CA certificate (to
    check the others), its own certificate and its private key (to prove who it is)."""

    ca: bytes
    certificate: bytes
    key: bytes  # never in a log line or a repr: see __repr__

    def __repr__(self) -> str:
        return f"PartyCredentials(for {sorted(self.identities)})"

    @property
    def identities(self) -> frozenset[str]:
        """The party names this certificate speaks for."""
        return identities(x509.load_pem_x509_certificate(self.certificate))

    def save(self, directory: Path, name: str) -> TlsFiles:
        """Write ``NAME.crt`` and ``NAME.key`` (owner-only) into ``directory``, and
        ``ca.crt`` unless it is there already."""
        files = TlsFiles(
            ca=directory / CA_CERT, cert=directory / f"{name}.crt", key=directory / f"{name}.key"
        )
        if not files.ca.exists():
            _write(files.ca, self.ca, _PUBLIC)
        _write(files.key, self.key, _PRIVATE)
        _write(files.cert, self.certificate, _PUBLIC)
        return files


@dataclass(frozen=True, slots=True)
class Authority:
    """A federation's certificate authority: its certificate and its private key."""

    certificate: x509.Certificate
    key: _Key = field(repr=False)

    @classmethod
    def create(cls, name: str = "Consortium federation CA", *, days: int = 3650) -> Authority:
        key = ec.generate_private_key(_CURVE)
        cert = (
            _builder(name, key, issuer=None, until=_now() + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, _HASH)
        )
        return cls(certificate=cert, key=key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, party: str, *, days: int = 365) -> PartyCredentials:
        """A new key and a certificate for ``party``, good as TLS client and server."""
        check_party_name(party)
        key = ec.generate_private_key(_CURVE)
        until = min(_now() + dt.timedelta(days=days), self.certificate.not_valid_after_utc)
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        issuer_key = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        cert = (
            _builder(party, key, issuer=self.certificate.subject, until=until)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
            .add_extension(issuer_key, False)
            .sign(self.key, _HASH)
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return PartyCredentials(ca=self.certificate_pem, certificate=pem, key=_key_pem(key))

    def save(self, directory: Path) -> TlsFiles:
        """Write ``ca.crt`` and ``ca.key`` (owner-only) into ``directory`` (made ``0700``)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = TlsFiles(ca=directory / CA_CERT, cert=directory / CA_CERT, key=directory / CA_KEY)
        if files.ca.exists() or files.key.exists():
            raise ConfigError(
                f"{directory} already holds a CA; remove {CA_CERT} and {CA_KEY} first"
            )
        _write(files.key, _key_pem(self.key), _PRIVATE)
        _write(files.ca, self.certificate_pem, _PUBLIC)
        return files

    @classmethod
    def load(cls, directory: Path) -> Authority:
        """The CA saved in ``directory`` by :meth:`save`."""
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        cert = _load_cert(_read(cert_path, "CA certificate"), cert_path)
        key = _load_key(_read(key_path, "CA private key"), key_path)
        if key.public_key() != cert.public_key():
            raise ConfigError(f"{key_path}: this key does not belong to {cert_path}")
        return cls(certificate=cert, key=key)


def _builder(
    name: str, key: _Key, *, issuer: x509.Name | None, until: dt.datetime
) -> x509.CertificateBuilder:
    """A certificate for ``key`` named ``name``, valid from a little before now to ``until``:
    a CA's when ``issuer`` is None (it signs itself), else a party's issued by ``issuer``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = issuer is None
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _SKEW)
        .not_valid_after(until)
        # path_length=0: the CA signs party certificates only, never another CA
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
    )
