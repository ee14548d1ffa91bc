"""Who is who in a mesh: certificates from the mesh CA, and signatures a relay cannot forge.

Every party holds a certificate naming it, issued by the mesh's private CA, and its key.
The same key that authenticates a node's TLS connections signs what must pass through the
coordinator untouched (PSI requests and replies between domains), so a domain can check
that a request really comes from the peer domain the protocol names, not from the relay.
In one process, ``ephemeral`` gives every party such an identity from a throwaway CA.

Audit logs are signed too (``Signer``): by a node's certificate key, or by a key of the
local user (``local_signer``, Ed25519) when the writer has no certificate.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.io import splitmesh_home

CA_NAME = "splitmesh mesh CA"


class Signer(Protocol):
    """Anything that signs bytes and says which public key checks it."""

    def sign_bytes(self, data: bytes) -> bytes: ...

    @property
    def public_pem(self) -> str: ...


def _ca_extensions(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(usage, critical=True)


def _san(name: str, hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for h in dict.fromkeys((name, *hosts)):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            entries.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(entries)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def issue_certificates(
    parties: list[str], *, hosts: tuple[str, ...] = (), days: int = 365
) -> tuple[bytes, dict[str, tuple[bytes, bytes]]]:
    """A fresh CA and one certificate + key per party, in memory: (CA PEM, {party: (cert
    PEM, key PEM)}). The CA's key is thrown away: nobody can mint more afterwards."""
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_cert = _ca_extensions(
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
    ).sign(ca_key, hashes.SHA256())
    out = {}
    for party in parties:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(party, hosts), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        out[party] = (cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))
    return ca_cert.public_bytes(serialization.Encoding.PEM), out


def _public_pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _sign(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 for certificate (P-256) keys, plain Ed25519 otherwise."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def certificate_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def public_fingerprint(public_pem: str) -> str:
    """SHA-256 of a public key (DER), lowercase hex: how an audit log names its signer."""
    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def verify_bytes(public_pem: str, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` over ``data`` checks with the public key (EC or Ed25519)."""
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Signed:
    """A claim (JSON text), the signer's certificate and the signature over the claim."""

    claim: str
    cert: str
    signature: bytes


class Identity:
    """A party's certificate and key, and the mesh CA it checks its peers against."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        try:
            self.cert = x509.load_pem_x509_certificate(cert_pem)
            self.ca = x509.load_pem_x509_certificate(ca_pem)
            self._key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise ConfigError(f"a certificate or key cannot be read: {exc}") from None
        if not isinstance(self._key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError("party keys must be EC (P-256) or Ed25519 keys")
        self.cert_pem = cert_pem.decode()
        self.name = certificate_name(self.cert)

    @classmethod
    def from_files(cls, ca: str | Path, cert: str | Path, key: str | Path) -> Identity:
        read = {}
        for what, path in (("ca", ca), ("cert", cert), ("key", key)):
            try:
                read[what] = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"identity {what} file {path} cannot be read: {exc.strerror or exc}",
                    hint="create certificates with `splitmesh certs init`",
                ) from None
        return cls(read["cert"], read["key"], read["ca"])

    @classmethod
    def ephemeral(cls, parties: list[str]) -> dict[str, Identity]:
        """One throwaway CA and an identity per party: parties of one process sign and check
        exactly as nodes on separate hosts do."""
        ca, issued = issue_certificates(parties, days=2)
        return {p: cls(cert, key, ca) for p, (cert, key) in issued.items()}

    # -- signing ---------------------------------------------------------------------------
    @property
    def public_pem(self) -> str:
        return _public_pem(self._key.public_key())

    def sign_bytes(self, data: bytes) -> bytes:
        return _sign(self._key, data)

    def secret(self, label: str) -> bytes:
        """A secret only this party can derive (from its private key)."""
        return _secret(self._key, label)

    def sign(self, claim: dict[str, Any]) -> Signed:
        text = json.dumps(claim, sort_keys=True, separators=(",", ":"))
        return Signed(text, self.cert_pem, self.sign_bytes(text.encode()))

    # -- checking a peer's signature ---------------------------------------------------------
    def verify(self, signed: Signed, *, sender: str, what: str) -> dict[str, Any]:
        """The claim, once the certificate is from this mesh's CA, names ``sender`` and
        signed it; else ProtocolError saying which check failed (``what``: the message)."""
        where = f"{self.name}: {what} claims to come from {sender!r}"
        try:
            cert = x509.load_pem_x509_certificate(signed.cert.encode())
        except ValueError:
            raise ProtocolError(f"{where}, but carries no readable certificate") from None
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            raise ProtocolError(
                f"{where}, but its certificate is not from this mesh's CA"
            ) from None
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ProtocolError(f"{where}, but its certificate is not valid now")
        if certificate_name(cert) != sender:
            raise ProtocolError(f"{where}, but its certificate names {certificate_name(cert)!r}")
        if not verify_bytes(
            _public_pem(cert.public_key()), signed.claim.encode(), signed.signature
        ):
            raise ProtocolError(f"{where}, but the signature does not check (forged or altered)")
        try:
            claim = json.loads(signed.claim)
        except json.JSONDecodeError:
            raise ProtocolError(f"{where}, but its claim is not JSON") from None
        if not isinstance(claim, dict):
            raise ProtocolError(f"{where}, but its claim is not a JSON object")
        return claim


class LocalSigner:
    """An Ed25519 key of this user, for audit logs written outside any node (in process).

    Kept at ``$SPLITMESH_HOME/audit-ed25519.pem`` (default ``~/.splitmesh``), mode 0600,
    created on first use.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_file():
            try:
                key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"audit key {self.path} cannot be read: {exc}") from None
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ConfigError(f"audit key {self.path} is not an Ed25519 key")
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(_pem_key(key))
        self._key = key

    @property
    def public_pem(self) -> str:
        return _public_pem(self._key.public_key())

    def sign_bytes(self, data: bytes) -> bytes:
        return _sign(self._key, data)

    def secret(self, label: str) -> bytes:
        return _secret(self._key, label)


def _secret(key, label: str) -> bytes:
    """A secret derived from a private key (HMAC-SHA256 of ``label``): what only the key's
    holder can compute, e.g. the key of the noise it adds to what it releases."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return hmac.new(der, label.encode(), hashlib.sha256).digest()


def local_signer() -> LocalSigner:
    return LocalSigner(splitmesh_home() / "audit-ed25519.pem")
