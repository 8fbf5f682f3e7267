"""The project's private CA: a root certificate and short-lived server certificates.

Local stack and production share this shape: in production the CA key lives in a secret
manager or an HSM and only the issuing step changes (see ``docs/control-plane.md``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipelines.stack.config import StackConfig
from pipelines.stack.files import atomic_write

CA_DAYS = 3650


@dataclass(frozen=True)
class CertInfo:
    """What ``status`` shows about a certificate (never the key)."""

    path: Path
    serial: int
    not_after: dt.datetime

    def days_left(self, now: dt.datetime | None = None) -> float:
        """Days until expiry."""
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(config: StackConfig) -> Path:
    """Create the CA once (idempotent); return the CA certificate path."""
    key_path = config.pki / "ca.key"
    if config.ca_cert.exists() and key_path.exists():
        return config.ca_cert
    config.pki.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ordinal stack private CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    atomic_write(key_path, _key_pem(key), mode=0o600)
    atomic_write(config.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    return config.ca_cert


def server_paths(config: StackConfig) -> tuple[Path, Path]:
    """(certificate, key) paths of the proxy's server certificate."""
    return config.pki / "server.pem", config.pki / "server.key"


def issue_server_cert(config: StackConfig, days: float | None = None) -> CertInfo:
    """Issue a server certificate for loopback (``127.0.0.1``, ``localhost``) from the CA.

    The key and certificate are replaced atomically, key first, so a proxy reload never
    reads a certificate without its key.
    """
    ensure_ca(config)
    ca_key = serialization.load_pem_private_key((config.pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(config.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    lifetime = dt.timedelta(days=config.cert_days if days is None else days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(config.host))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = server_paths(config)
    # Each file is replaced atomically; nginx reads them only when the stack reloads it,
    # after both are written, so it never pairs a new certificate with an old key.
    chain = cert.public_bytes(serialization.Encoding.PEM) + config.ca_cert.read_bytes()
    atomic_write(key_path, _key_pem(key), mode=0o600)
    atomic_write(cert_path, chain)
    return cert_info(cert_path)


def cert_info(path: Path) -> CertInfo:
    """Serial and expiry of the first certificate in ``path``."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return CertInfo(path=path, serial=cert.serial_number, not_after=cert.not_valid_after_utc)


def needs_renewal(config: StackConfig, now: dt.datetime | None = None) -> bool:
    """Whether the server certificate is missing or inside its renewal window."""
    cert_path, key_path = server_paths(config)
    if not cert_path.exists() or not key_path.exists():
        return True
    return cert_info(cert_path).days_left(now) < config.renew_before_days


def tls_context(config: StackConfig) -> ssl.SSLContext:
    """A client TLS context that trusts the private CA only."""
    return ssl.create_default_context(cafile=str(config.ca_cert))
