"""Certificates for mutual TLS: one private CA per mesh, one certificate and key per party.

Each party's certificate names the party (CN and a DNS SAN), so the coordinator checks it
reached the node it expected, and a node checks the caller's certificate fingerprint
against the ones it accepts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from splitmesh.errors import ConfigError
from splitmesh.io import atomic_write_bytes, atomic_write_json
from splitmesh.transport.identity import issue_certificates

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """A party's TLS material: the mesh CA, its certificate chain and its private key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for field in ("ca", "cert", "key"):
            path = Path(getattr(self, field))
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"TLS {field} file {path} cannot be read: {exc.strerror or exc}",
                    hint="create certificates with `splitmesh certs init`",
                ) from exc
        return out[0], out[1], out[2]

    @classmethod
    def for_party(cls, directory: str | Path, party: str) -> TlsFiles:
        d = Path(directory)
        return cls(d / "ca.crt", d / f"{party}.crt", d / f"{party}.key")


def check_party_name(name: str) -> str:
    """Party names are DNS labels: they go into certificates and host names."""
    if not _NAME.match(name):
        raise ConfigError(
            f"party name {name!r} is not usable in a certificate: use lowercase letters, "
            "digits and '-' (at most 63 characters, not starting or ending with '-')"
        )
    return name


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate (DER), as lowercase hex: what nodes are told to accept."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


def create_certificates(
    out: str | Path,
    parties: list[str],
    *,
    hosts: tuple[str, ...] = LOOPBACK_HOSTS,
    days: int = 365,
    force: bool = False,
) -> dict[str, str]:
    """A fresh CA and one certificate + key per party under ``out``; returns fingerprints.

    Writes ``ca.crt``, ``<party>.crt``, ``<party>.key`` (mode 0600) and
    ``fingerprints.json``. The CA's private key is not kept: nobody can mint more
    certificates for this mesh afterwards, so adding a party means a new ``certs init``.
    """
    out = Path(out)
    for p in parties:
        check_party_name(p)
    if len(set(parties)) != len(parties):
        raise ConfigError(f"party names must be unique, got {parties}")
    if (out / "ca.crt").exists() and not force:
        raise ConfigError(
            f"{out / 'ca.crt'} exists: refusing to replace the mesh's certificates",
            hint="pass --force to create a new CA (every node then needs its new files)",
        )
    ca_pem, issued = issue_certificates(parties, hosts=hosts, days=days)
    atomic_write_bytes(out / "ca.crt", ca_pem)
    prints = {}
    for party, (pem, key) in issued.items():
        atomic_write_bytes(out / f"{party}.crt", pem)
        atomic_write_bytes(out / f"{party}.key", key, private=True)
        os.chmod(out / f"{party}.key", 0o600)
        prints[party] = fingerprint(pem)
    atomic_write_json(out / "fingerprints.json", prints)
    return prints


def read_fingerprints(path: str | Path) -> dict[str, str]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"fingerprints file {path} cannot be read: {exc}") from exc


def is_loopback(address: str) -> bool:
    """True for host:port addresses on 127.0.0.0/8, ::1 or localhost."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
