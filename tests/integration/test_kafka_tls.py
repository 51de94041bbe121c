"""Kafka over TLS: Herald verifies the brokers with `HERALD_KAFKA_SSL_CAFILE` and, for mutual TLS, presents
`HERALD_KAFKA_SSL_CERTFILE`/`KEYFILE` (an encrypted key, opened with `HERALD_KAFKA_SSL_KEY_PASSWORD`).

Tansu 0.6.0 cannot serve TLS itself: its `--cert` and `--key` options are declared in one exclusive group, so it
refuses both together ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'") and with one alone it
listens in plain TCP. So a TLS terminator (Python's `ssl`, requiring a client certificate signed by the test CA)
listens in front of it, and Tansu advertises the terminator's address: every connection a client opens, the
bootstrap one and those to the partition leaders, goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consumers.cli.publish import make_event
from consumers.dev.broker import broker_binary, free_port, port_open
from consumers.dev.mailsink import start_mail_sink
from consumers.dev.processes import start_child, stop_process
from consumers.topics import ensure_topics, kafka_client_kwargs
from schemas.catalog import Catalog
from schemas.settings import Settings
from schemas.status import FINAL_STATUSES, Status
from tests.conftest import unique_settings
from tests.integration.harness import Stack, wait_until

pytestmark = pytest.mark.integration

KEY_PASSWORD = "client-key-password"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    other_ca: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
                 *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer_name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    elif server:
        builder = (builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None,
           password: bytes | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    elif key is not None:
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           encryption))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = ("Herald test CA", ca_key)
    return Pki(
        ca=_write(d / "ca.pem", _certificate("Herald test CA", ca_key, None, ca=True)),
        server_cert=_write(d / "server.pem", _certificate("localhost", server_key, ca, server=True)),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.pem", _certificate("herald-worker", client_key, ca)),
        client_key=_write(d / "client.key", key=client_key, password=KEY_PASSWORD.encode()),
        other_ca=_write(d / "other-ca.pem", _certificate("Some other CA", other_key, None, ca=True)),
    )


class TlsTerminator:
    """Accepts TLS (client certificate required) on `port` and relays the bytes to Tansu; its own thread and loop,
    so a test that blocks (starting a worker) does not stall it."""

    def __init__(self, pki: Pki, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.load_verify_locations(pki.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._relay(reader, up_writer), self._relay(up_reader, writer))

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.context), self.loop).result(10)

    def stop(self) -> None:
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def tls_bootstrap(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`127.0.0.1:PORT` of a Tansu broker reachable only through mutual TLS."""
    tansu_port, tls_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("tansu-tls") / "tansu.log"
    with open(log, "ab") as out:
        tansu = start_child([broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{tansu_port}",
                             "--advertised-listener-url", f"tcp://127.0.0.1:{tls_port}",
                             "--storage-engine", "memory://tansu/"], stdout=out, stderr=subprocess.STDOUT)
    terminator = TlsTerminator(pki, tls_port, tansu_port)
    try:
        assert wait_until(lambda: port_open("127.0.0.1", tansu_port), 20), "Tansu did not start"
        terminator.start()
        yield f"127.0.0.1:{tls_port}"
    finally:
        terminator.stop()
        stop_process(tansu, 5)


def tls_settings(tmp_path: Path, bootstrap: str, pki: Pki, **overrides: object) -> Settings:
    values: dict[str, object] = dict(kafka_bootstrap=bootstrap, kafka_security_protocol="SSL",
                                     kafka_ssl_cafile=pki.ca, kafka_ssl_certfile=pki.client_cert,
                                     kafka_ssl_keyfile=pki.client_key, kafka_ssl_key_password=KEY_PASSWORD)
    values.update(overrides)
    return unique_settings(tmp_path, **values)


async def list_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 15)
        return list(await asyncio.wait_for(admin.list_topics(), 15))
    finally:
        await admin.close()


async def test_kafka_tls__ca_file_and_client_certificate_connect_and_create_topics(
        tmp_path: Path, pki: Pki, tls_bootstrap: str) -> None:
    settings = tls_settings(tmp_path, tls_bootstrap, pki)

    created = await ensure_topics(settings, attempts=1)

    assert settings.topic("events") in created
    assert set(created) <= set(await list_topics(settings))


@pytest.mark.parametrize(("overrides", "logged"), [
    # The system's CAs do not know the test CA.
    ({"kafka_ssl_cafile": None}, "CERTIFICATE_VERIFY_FAILED"),
    # Another CA did not sign the broker's certificate.
    ({"kafka_ssl_cafile": "other"}, "CERTIFICATE_VERIFY_FAILED"),
    # No client certificate for a broker that requires one: it closes the connection after the handshake.
    ({"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None, "kafka_ssl_key_password": None}, "closed"),
], ids=["system-cas", "other-ca", "no-client-certificate"])
async def test_kafka_tls__an_untrusted_broker_or_a_missing_client_certificate_fails(
        tmp_path: Path, pki: Pki, tls_bootstrap: str, overrides: dict[str, object], logged: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if overrides.get("kafka_ssl_cafile") == "other":
        overrides = {**overrides, "kafka_ssl_cafile": pki.other_ca}
    settings = tls_settings(tmp_path, tls_bootstrap, pki, **overrides)

    with pytest.raises(KafkaConnectionError):
        await list_topics(settings)
    assert logged in caplog.text


async def test_kafka_tls__worker_sends_an_email_over_mutual_tls(tmp_path: Path, pki: Pki,
                                                                tls_bootstrap: str) -> None:
    # The Faust app (faust_config), the critical lane's consumer and the state stores all connect through TLS.
    settings = tls_settings(tmp_path, tls_bootstrap, pki)
    controller, sink = start_mail_sink(settings.smtp_port)
    stack = Stack(settings=settings, sink=sink)
    try:
        await stack.create_topics()
        await asyncio.to_thread(stack.start_worker)
        assert settings.catalog is not None
        sample = Catalog.load(settings.catalog).types["order.confirmed"].sample
        await stack.publish([make_event("order.confirmed", {"id": "user-tls", "email": "tls@example.org"}, sample)])
        await stack.wait_statuses(lambda seen: any(s.status in FINAL_STATUSES | {Status.SENT} for s in seen),
                                  timeout=60)
        assert [s.status for s in stack.statuses if s.status is not Status.ACCEPTED] == [Status.SENT]
        assert wait_until(lambda: any("tls@example.org" in str(m["To"]) for m in sink.snapshot()), 10)
    finally:
        stack.stop_workers()
        controller.stop()
