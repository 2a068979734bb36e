"""HTTPS for the daemon's HTTP server: the operator's certificate, or a self-signed one made on first start.

`[http] tls_cert`/`tls_key` are files, or PEM text (what a `${credential:NAME}` reference resolves to). With
`tls = "auto"` (the default) a non-loopback bind without a certificate gets a self-signed one, generated into
`tls_dir` on first start (with the `cryptography` package) for the host's names and addresses, and reused
across restarts until 30 days before it expires. Loopback stays plain HTTP unless a certificate is given.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .logs import get

log = get(__name__)
RENEW_BEFORE = datetime.timedelta(days=30)
SELF_SIGNED_DAYS = 397  # what browsers accept from public CAs; a self-signed one needs no more
CERT_NAME, KEY_NAME = "self-signed.crt", "self-signed.key"


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str  # SHA-256 of the certificate, colon hex: what a person compares
    spki_sha256: str  # base64 SHA-256 of the public key: what --ignore-certificate-errors-spki-list takes
    not_after: datetime.datetime
    self_signed: bool = False

    @property
    def days_left(self) -> float:
        return (self.not_after - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wants_tls(http) -> bool:
    """HTTPS or not, from `[http]`: a certificate given or `tls = "on"`: yes; `off`: no; `auto`: off loopback."""
    if http.tls == "off":
        return False
    return bool(http.tls_cert) or http.tls == "on" or not is_loopback(http.host)


def load(cert: str, key: str) -> Certificate:
    """Read and check an operator's certificate and key (paths or PEM text): ConfigError naming the key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem = _pem("http.tls_cert", cert)
    key_pem = _pem("http.tls_key", key)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise ConfigError(f"http.tls_cert: not a PEM certificate ({e})") from None
    not_after = certificate.not_valid_after_utc
    if not_after <= datetime.datetime.now(datetime.UTC):
        raise ConfigError(f"http.tls_cert: the certificate expired on {not_after:%Y-%m-%d}")
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"http.tls_key: not an unencrypted PEM private key ({e})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, public) != \
            certificate.public_key().public_bytes(serialization.Encoding.DER, public):
        raise ConfigError("http.tls_key: the key does not match the certificate in http.tls_cert")
    return _describe(certificate, cert_pem, key_pem)


def ensure_self_signed(folder: str | Path, host: str) -> Certificate:
    """The self-signed certificate in `folder`: reused while valid for another 30 days, else made anew."""
    from cryptography import x509

    folder = Path(folder)
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        try:
            existing = load(str(cert_path), str(key_path))
            names = certificate_names(x509.load_pem_x509_certificate(cert_path.read_bytes()))
            if existing.days_left > RENEW_BEFORE.days and host_names(host) <= names:
                return Certificate(**{**existing.__dict__, "self_signed": True})
        except ConfigError as e:
            log.warning("the self-signed certificate is unusable; making a new one", error=str(e))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = _generate(host_names(host))
        _write_private(key_path, key_pem)
        _write_private(cert_path, cert_pem, mode=0o644)
    except OSError as e:
        raise ConfigError(f"http.tls_dir: cannot write the self-signed certificate in {folder}: "
                          f"{e.strerror or e}") from None
    made = load(str(cert_path), str(key_path))
    log.info("made a self-signed TLS certificate", file=str(cert_path), sha256=made.fingerprint,
             spki_sha256=made.spki_sha256, names=sorted(host_names(host)))
    return Certificate(**{**made.__dict__, "self_signed": True})


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """TLS 1.2+ with Python's default (modern) ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="monitor-tls-") as folder:  # ssl reads files; they live a moment
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        _write_private(cert_path, certificate.cert_pem)
        _write_private(key_path, certificate.key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def host_names(host: str) -> set[str]:
    """Names and addresses a client may use for this host: the bind address (or, for a wildcard bind, every
    address of the host), its host names, and loopback."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    wildcard = host in ("0.0.0.0", "::", "")
    if not wildcard:
        names.add(host)
    else:
        try:
            import ifaddr  # aioice's dependency: every interface's addresses

            for adapter in ifaddr.get_adapters():
                for ip in adapter.ips:
                    names.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
        except ImportError:
            pass
    return {n.split("%")[0] for n in names if n}


def certificate_names(certificate) -> set[str]:
    from cryptography import x509

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


# --- helpers -------------------------------------------------------------------------------------------------

def _pem(key: str, value: str) -> bytes:
    """PEM from a path, or the PEM text itself (what a `${credential:NAME}` reference resolves to)."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {value}: {e.strerror or e}") from None


def _describe(certificate, cert_pem: bytes, key_pem: bytes) -> Certificate:
    from cryptography.hazmat.primitives import hashes, serialization

    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    return Certificate(cert_pem, key_pem, fingerprint, base64.b64encode(hashlib.sha256(spki).digest()).decode(),
                       certificate.not_valid_after_utc)


def _generate(names: set[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname()[:64] or "deepfake-monitor"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepfake-monitor (self-signed)")])
    sans = []
    for name in sorted(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
                   .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".partial")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(handle, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
