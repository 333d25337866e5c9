"""The federation's certificates: what the CA issues, how files are written and checked."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consortium.errors import ConfigError
from consortium.security import (
    Authority,
    PartyCredentials,
    TlsFiles,
    check_party_name,
    identities,
)


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.create("test CA")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_issued_certificate_names_the_party_and_is_signed_by_the_ca(ca):
    creds = ca.issue("trainer-3")
    cert = x509.load_pem_x509_certificate(creds.certificate)
    assert identities(cert) == {"trainer-3"} == creds.identities
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "trainer-3"
    cert.verify_directly_issued_by(ca.certificate)  # raises if not
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert creds.ca == ca.certificate_pem


def test_identities_fall_back_to_the_common_name_without_a_san(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    assert identities(cert) == {"plain"}


def test_keys_are_written_owner_only_and_never_overwritten(tmp_path, ca):
    files = ca.issue("alice").save(tmp_path, "alice")
    assert mode(files.key) == 0o600
    assert mode(files.cert) == mode(files.ca) == 0o644
    assert b"PRIVATE KEY" in files.key.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        ca.issue("alice").save(tmp_path, "alice")
    ca_files = ca.save(tmp_path / "ca")
    assert mode(ca_files.key) == 0o600 and mode(tmp_path / "ca") == 0o700
    with pytest.raises(ConfigError, match="already holds a CA"):
        ca.save(tmp_path / "ca")
    again = Authority.load(tmp_path / "ca")
    assert again.certificate == ca.certificate


def test_a_key_file_is_created_0600_even_under_a_permissive_umask(tmp_path, ca):
    old = os.umask(0)
    try:
        files = ca.issue("bob").save(tmp_path, "bob")
    finally:
        os.umask(old)
    assert mode(files.key) == 0o600


def test_saving_does_not_follow_a_planted_link(tmp_path, ca):
    target = tmp_path / "elsewhere"
    (tmp_path / "carol.key").symlink_to(target)
    with pytest.raises(ConfigError, match="already exists"):
        ca.issue("carol").save(tmp_path, "carol")
    assert not target.exists()


def test_the_private_key_is_not_in_the_repr(ca):
    creds = ca.issue("dave")
    assert "PRIVATE" not in repr(creds) and "dave" in repr(creds)
    assert "PRIVATE" not in repr(ca)


def test_files_load_back_and_are_checked(tmp_path, ca):
    files = ca.issue("erin").save(tmp_path, "erin")
    creds = files.load(party="erin")
    assert isinstance(creds, PartyCredentials) and creds.identities == {"erin"}
    with pytest.raises(ConfigError, match="not for party 'frank'"):
        files.load(party="frank")


def test_a_certificate_from_another_ca_is_refused(tmp_path, ca):
    other = Authority.create("other CA")
    (tmp_path / "mine").mkdir()
    (tmp_path / "theirs").mkdir()
    mine = ca.issue("erin").save(tmp_path / "mine", "erin")
    theirs = other.issue("erin").save(tmp_path / "theirs", "erin")
    mixed = TlsFiles(ca=mine.ca, cert=theirs.cert, key=theirs.key)
    with pytest.raises(ConfigError, match="not issued by the CA"):
        mixed.load()


def test_a_key_that_does_not_belong_to_the_certificate_is_refused(tmp_path, ca):
    a = ca.issue("a").save(tmp_path, "a")
    b = ca.issue("b").save(tmp_path, "b")
    with pytest.raises(ConfigError, match="does not belong"):
        TlsFiles(ca=a.ca, cert=a.cert, key=b.key).load()


def test_an_expired_certificate_is_refused(tmp_path, ca):
    key = ec.generate_private_key(ec.SECP256R1())
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(long_ago)
        .not_valid_after(long_ago + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    (tmp_path / "old.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "old.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ca.crt").write_bytes(ca.certificate_pem)
    with pytest.raises(ConfigError, match="valid only from"):
        TlsFiles(ca=tmp_path / "ca.crt", cert=tmp_path / "old.crt", key=tmp_path / "old.key").load()


@pytest.mark.parametrize("broken", ["ca", "cert", "key"])
def test_unreadable_or_garbled_files_name_the_file(tmp_path, ca, broken):
    files = ca.issue("g").save(tmp_path, "g")
    path = getattr(files, broken)
    path.chmod(0o600)
    path.write_bytes(b"-----BEGIN NONSENSE-----\n")
    with pytest.raises(ConfigError, match=str(path)):
        files.load()
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        files.load()


def test_a_key_readable_by_others_is_warned_about(tmp_path, ca, caplog):
    files = ca.issue("h").save(tmp_path, "h")
    files.key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="consortium.security"):
        files.load()
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    assert not any(b"PRIVATE" in r.getMessage().encode() for r in caplog.records)


@pytest.mark.parametrize("name", ["", "ca", "-x", "x.", "a b", "*", "é", "x" * 65, "a/b"])
def test_names_a_certificate_cannot_carry_are_refused(ca, name):
    with pytest.raises(ConfigError, match="cannot name a party certificate"):
        ca.issue(name)


@pytest.mark.parametrize("name", ["aggregator", "trainer-0", "eu.hospital_1", "x" * 64, "A9"])
def test_names_a_certificate_can_carry(name):
    assert check_party_name(name) == name
