"""Issue 11, "fail fast in production": one row per finding of the audit, each refused with one line naming its
setting, and real-looking configurations accepted.

Herald's own settings (HERALD_SECRET, Kafka) are refused by `Settings` itself, so by every `herald` command;
the enabled providers' development credentials by `channels.production.production_problems`, which `herald
worker` runs before it connects to anything. Names new in issue 11 are imported where they are used, so on the
code before it each row fails on its own assertion rather than the whole module on an import.
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from consumers.dev.broker import free_port
from schemas.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STRONG = secrets.token_urlsafe(32)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No HERALD_* variable from the outer environment; the data directory in tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith("HERALD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path))
    return monkeypatch


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str], tmp_path: Path) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))


def production_problems(settings: Settings) -> list[str]:
    from channels.production import production_problems as check

    return check(settings)


def pem_files(folder: Path, *, key_password: bytes | None = None) -> tuple[Path, Path, Path]:
    """A self-signed certificate (it is its own CA) and its key: (ca.pem, cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald-unit-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "ca.pem").write_bytes(pem)
    (folder / "cert.pem").write_bytes(pem)
    encryption = (serialization.BestAvailableEncryption(key_password) if key_password
                  else serialization.NoEncryption())
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8, encryption))
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


# ---------------------------------------------------------------------------------- HERALD_SECRET and Kafka

PRODUCTION = {"HERALD_ENV": "production", "HERALD_SECRET": STRONG}
SASL = {"HERALD_KAFKA_SASL_USERNAME": "herald", "HERALD_KAFKA_SASL_PASSWORD": secrets.token_urlsafe(24)}

REFUSED = [
    pytest.param({**PRODUCTION, "HERALD_SECRET": " " * 16}, "HERALD_SECRET is blank", id="secret-16-spaces"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "change-me-in-production-please"},
                 "HERALD_SECRET is a published example or test value", id="secret-compose-default"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "EXAMPLE-ONLY-replace-with-32-random-bytes"},
                 "HERALD_SECRET is a published example or test value", id="secret-k8s-example"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "bench-secret-0123456789"},
                 "HERALD_SECRET is a published example or test value", id="secret-from-bench"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "s" * 32}, "HERALD_SECRET is too weak", id="secret-one-letter"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "ab" * 32}, "HERALD_SECRET is too weak", id="secret-two-letters"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": "a-production-secret-long-enough"}, "HERALD_SECRET is too weak",
                 id="secret-words"),
    pytest.param({**PRODUCTION, **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                  "HERALD_KAFKA_SASL_MECHANISM": "PLAIN"},
                 "HERALD_KAFKA_SASL_MECHANISM=PLAIN over HERALD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends the "
                 "Kafka password in clear", id="sasl-plain-without-tls"),
    pytest.param({**PRODUCTION, **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                  "HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "HERALD_KAFKA_SASL_PASSWORD": "EXAMPLE-ONLY-kafka-password"},
                 "HERALD_KAFKA_SASL_PASSWORD is an example placeholder", id="kafka-password-from-example-secret"),
    # In every environment: settings that can never work.
    pytest.param({"HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"},
                 "HERALD_KAFKA_SASL_MECHANISM=SCRAM-SHA-1 is not a SASL mechanism aiokafka supports",
                 id="sasl-unknown-mechanism"),
    pytest.param({**SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HERALD_KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
                 "HERALD_KAFKA_SASL_MECHANISM=OAUTHBEARER needs a token provider", id="sasl-oauthbearer"),
    pytest.param({"HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "HERALD_KAFKA_SASL_USERNAME": "herald"},
                 "HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD are required", id="sasl-without-password"),
    pytest.param({"HERALD_KAFKA_SECURITY_PROTOCOL": "SSL", "HERALD_KAFKA_SSL_CAFILE": "{tmp}/missing/ca.pem"},
                 "HERALD_KAFKA_SSL_CAFILE: no such file", id="tls-cafile-missing"),
    pytest.param({"HERALD_KAFKA_SECURITY_PROTOCOL": "SSL", "HERALD_KAFKA_SSL_CERTFILE": "{tmp}/missing/cert.pem"},
                 "HERALD_KAFKA_SSL_CERTFILE: no such file", id="tls-certfile-missing"),
    pytest.param({"HERALD_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "HERALD_KAFKA_SSL_CAFILE": "{tmp}/ca.pem"},
                 "HERALD_KAFKA_SSL_CAFILE set, but HERALD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
                 id="tls-files-without-tls"),
    pytest.param({"HERALD_KAFKA_SECURITY_PROTOCOL": "SSL", "HERALD_KAFKA_SSL_KEYFILE": "{tmp}/key.pem"},
                 "HERALD_KAFKA_SSL_KEYFILE needs HERALD_KAFKA_SSL_CERTFILE", id="tls-key-without-certificate"),
]


@pytest.mark.parametrize(("values", "line"), REFUSED)
def test_settings__refused_with_one_line_naming_the_setting(env: pytest.MonkeyPatch, tmp_path: Path,
                                                            values: dict[str, str], line: str) -> None:
    pem_files(tmp_path)
    set_env(env, values, tmp_path)

    with pytest.raises(ValidationError) as caught:
        Settings()

    from schemas.settings import configuration_errors

    lines = configuration_errors(caught.value)
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_settings__gssapi_without_its_package_is_refused(env: pytest.MonkeyPatch) -> None:
    import importlib.util

    if importlib.util.find_spec("gssapi") is not None:
        pytest.skip("the gssapi package is installed here")
    set_env(env, {"HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HERALD_KAFKA_SASL_MECHANISM": "GSSAPI"}, Path())

    with pytest.raises(ValidationError, match="HERALD_KAFKA_SASL_MECHANISM=GSSAPI needs the `gssapi` package"):
        Settings()


ACCEPTED = [
    pytest.param({**PRODUCTION}, id="production-token-urlsafe-32"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": base64.b64encode(secrets.token_bytes(32)).decode()},
                 id="production-openssl-rand-base64-32"),
    pytest.param({**PRODUCTION, "HERALD_SECRET": secrets.token_hex(32)}, id="production-openssl-rand-hex-32"),
    pytest.param({**PRODUCTION, **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                  "HERALD_KAFKA_SASL_MECHANISM": "PLAIN"}, id="production-plain-over-sasl-ssl"),
    pytest.param({**PRODUCTION, **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                  "HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, id="production-scram-without-tls"),
    pytest.param({**PRODUCTION, **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                  "HERALD_KAFKA_SASL_MECHANISM": "scram-sha-256", "HERALD_KAFKA_SSL_CAFILE": "{tmp}/ca.pem",
                  "HERALD_KAFKA_SSL_CERTFILE": "{tmp}/cert.pem", "HERALD_KAFKA_SSL_KEYFILE": "{tmp}/key.pem"},
                 id="production-scram-over-mutual-tls"),
    pytest.param({"HERALD_SECRET": "test-secret", **SASL, "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
                 id="dev-weak-secret-and-plain-sasl"),
    pytest.param({"HERALD_KAFKA_SSL_CAFILE": ""}, id="blank-cafile-is-unset"),
]


@pytest.mark.parametrize("values", ACCEPTED)
def test_settings__accepted(env: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str]) -> None:
    pem_files(tmp_path)
    set_env(env, values, tmp_path)

    settings = Settings()

    assert settings.kafka_sasl_mechanism.isupper()
    assert production_problems(settings) == []


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(32),
                                  lambda: base64.b64encode(secrets.token_bytes(32)).decode()],
                         ids=["token_urlsafe-32", "token_hex-32", "base64-32-bytes"])
def test_settings__generated_secrets_always_pass(make: Any) -> None:
    from schemas.settings import MIN_SECRET_BITS, secret_problem, secret_strength_bits

    for _ in range(2000):
        value = make()
        assert secret_problem(value) is None, (value, secret_strength_bits(value))
    assert secret_strength_bits(secrets.token_urlsafe(32)) > 1.5 * MIN_SECRET_BITS


def test_settings__errors_name_variables_but_never_echo_values(env: pytest.MonkeyPatch) -> None:
    password = "hunter2-" + secrets.token_hex(4)
    set_env(env, {"HERALD_ENV": "production", "HERALD_SECRET": "change-me-in-production-please",
                  "HERALD_KAFKA_SASL_PASSWORD": password, "HERALD_WEB_PORT": "not-a-port"}, Path())

    with pytest.raises(ValidationError) as caught:
        Settings()

    from schemas.settings import configuration_errors

    assert [line.split(":")[0] for line in configuration_errors(caught.value)] == ["HERALD_WEB_PORT"]
    assert password not in str(caught.value) and "change-me" not in str(caught.value)


# ------------------------------------------------------------------------------ providers' dev credentials

SENDGRID_KEY = base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
REAL_CREDENTIALS = {
    "HERALD_TWILIO_BASE_URL": "https://api.twilio.com",
    "HERALD_TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
    "HERALD_TWILIO_AUTH_TOKEN": secrets.token_hex(16),
    "HERALD_VONAGE_BASE_URL": "https://rest.nexmo.com",
    "HERALD_VONAGE_API_KEY": secrets.token_hex(4),
    "HERALD_VONAGE_API_SECRET": secrets.token_urlsafe(12),
    "HERALD_VONAGE_SIGNATURE_SECRET": secrets.token_urlsafe(32),
    "HERALD_META_BASE_URL": "https://graph.facebook.com",
    "HERALD_META_ACCESS_TOKEN": "EAAG" + secrets.token_urlsafe(48),
    "HERALD_META_APP_SECRET": secrets.token_hex(16),
    "HERALD_META_VERIFY_TOKEN": secrets.token_urlsafe(16),
    "HERALD_FCM_BASE_URL": "https://fcm.googleapis.com",
    "HERALD_FCM_ACCESS_TOKEN": "ya29." + secrets.token_urlsafe(48),
    "HERALD_SENDGRID_BASE_URL": "https://api.sendgrid.com",
    "HERALD_SENDGRID_API_KEY": "SG." + secrets.token_urlsafe(16) + "." + secrets.token_urlsafe(32),
    "HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID_KEY,
    "HERALD_WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
}
EVERY_PROVIDER = "email=smtp,sendgrid;sms=twilio,vonage;voice=twilio;whatsapp=meta;push=fcm;webhook=standard"

# (HERALD_PROVIDERS, the credential left at its development default): the audit's findings, one row each.
DEV_CREDENTIALS = [
    ("sms=twilio", "HERALD_TWILIO_AUTH_TOKEN"),
    ("sms=twilio", "HERALD_TWILIO_ACCOUNT_SID"),
    ("voice=twilio", "HERALD_TWILIO_AUTH_TOKEN"),
    ("sms=vonage", "HERALD_VONAGE_API_KEY"),
    ("sms=vonage", "HERALD_VONAGE_API_SECRET"),
    ("sms=vonage", "HERALD_VONAGE_SIGNATURE_SECRET"),
    ("whatsapp=meta", "HERALD_META_ACCESS_TOKEN"),
    ("whatsapp=meta", "HERALD_META_APP_SECRET"),
    ("whatsapp=meta", "HERALD_META_VERIFY_TOKEN"),
    ("push=fcm", "HERALD_FCM_ACCESS_TOKEN"),
    ("email=smtp,sendgrid", "HERALD_SENDGRID_API_KEY"),
    ("email=smtp,sendgrid", "HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY"),
    ("webhook=standard", "HERALD_WEBHOOK_SIGNING_SECRET"),
]


def provider_env(monkeypatch: pytest.MonkeyPatch, providers: str, *, env: str = "production") -> None:
    set_env(monkeypatch, {**REAL_CREDENTIALS, "HERALD_ENV": env, "HERALD_SECRET": STRONG,
                          "HERALD_PROVIDERS": providers}, Path())


@pytest.mark.parametrize("how", ["unset", "the-default-spelled-out", "empty", "blank"])
@pytest.mark.parametrize(("providers", "var"), DEV_CREDENTIALS)
def test_production__enabled_provider_on_a_dev_credential_is_refused(env: pytest.MonkeyPatch, providers: str,
                                                                     var: str, how: str) -> None:
    provider_env(env, providers)
    if how == "unset":
        env.delenv(var)
    elif how == "the-default-spelled-out":
        env.delenv(var)
        env.setenv(var, dev_default(var))
    else:
        env.setenv(var, "" if how == "empty" else "   ")

    problems = production_problems(Settings())

    state = "is empty" if how in ("empty", "blank") else "is the development default"
    assert len(problems) == 1 and problems[0].startswith(f"{var} {state}; set "), problems


@pytest.mark.parametrize(("providers", "var"), DEV_CREDENTIALS)
def test_production__dev_credential_of_a_disabled_provider_is_not_refused(env: pytest.MonkeyPatch, providers: str,
                                                                          var: str) -> None:
    provider_env(env, "email=smtp")
    env.delenv(var)

    assert production_problems(Settings()) == []


def test_production__dev_stack_keeps_every_dev_credential(env: pytest.MonkeyPatch) -> None:
    # `herald dev`, `demo` and `sim` run with HERALD_ENV=dev against the simulator and its defaults.
    set_env(env, {"HERALD_PROVIDERS": EVERY_PROVIDER}, Path())

    assert production_problems(Settings()) == []


def test_production__real_looking_configuration_with_every_provider_passes(env: pytest.MonkeyPatch) -> None:
    provider_env(env, EVERY_PROVIDER)

    assert production_problems(Settings()) == []


def test_production__every_provider_on_defaults_gives_one_line_per_variable(env: pytest.MonkeyPatch) -> None:
    set_env(env, {"HERALD_ENV": "production", "HERALD_SECRET": STRONG, "HERALD_PROVIDERS": EVERY_PROVIDER}, Path())

    problems = production_problems(Settings())

    named = [line.split()[0] for line in problems]
    assert len(named) == len(set(named)), "SMS and voice through Twilio name its variables once"
    assert {var for _, var in DEV_CREDENTIALS} <= set(named)
    assert {f"HERALD_{v}_BASE_URL" for v in ("TWILIO", "VONAGE", "META", "FCM", "SENDGRID")} <= set(named)
    assert all(line.startswith("HERALD_") and "\n" not in line for line in problems)


def test_production__unknown_provider_is_named(env: pytest.MonkeyPatch) -> None:
    set_env(env, {"HERALD_ENV": "production", "HERALD_SECRET": STRONG, "HERALD_PROVIDERS": "sms=nexmo"}, Path())

    (problem,) = production_problems(Settings())

    assert problem.startswith("HERALD_PROVIDERS: no provider 'sms.nexmo'")


def provider_settings_classes() -> dict[str, type[Any]]:
    from channels.registry import PROVIDERS, provider_class

    classes = {key: getattr(provider_class(key), "settings_class", None) for key in PROVIDERS}
    return {key: cls for key, cls in classes.items() if cls is not None}


def dev_default(var: str) -> str:
    for cls in provider_settings_classes().values():
        prefix = cls.model_config["env_prefix"]
        field = var.removeprefix(prefix).lower()
        if var.startswith(prefix) and field in cls.model_fields:
            value = cls.model_fields[field].get_default(call_default_factory=True)
            return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    raise LookupError(var)


def test_production__every_secret_of_every_provider_is_declared_and_tested() -> None:
    classes = provider_settings_classes()
    assert set(classes) == {"email.sendgrid", "sms.twilio", "sms.vonage", "whatsapp.meta", "voice.twilio",
                            "push.fcm", "webhook.standard"}, "email.smtp uses Herald's own settings"
    tested = {var for _, var in DEV_CREDENTIALS}
    for key, cls in classes.items():
        declared: dict[str, str] = getattr(cls, "DEV_DEFAULTS", {})
        secret_fields = {name for name, f in cls.model_fields.items() if f.annotation is SecretStr}
        assert secret_fields <= set(declared), f"{key}: every secret field is a declared credential"
        prefix = cls.model_config["env_prefix"]
        assert {f"{prefix}{field}".upper() for field in declared} <= tested, f"{key}: a row per credential"


# ---------------------------------------------------------------------------------------- `herald worker`


def run_worker(tmp_path: Path, values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`herald worker` against a port where no broker listens: it must stop before connecting."""
    child = {k: v for k, v in os.environ.items() if not k.upper().startswith("HERALD_")}
    child |= {"HERALD_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "HERALD_DATA_DIR": str(tmp_path), **values}
    return subprocess.run([sys.executable, "-m", "consumers", "worker"], env=child, cwd=ROOT, capture_output=True,
                          text=True, timeout=90, check=False)


def test_worker__dev_twilio_token_in_production_exits_2_with_one_line(tmp_path: Path) -> None:
    values = {k: v for k, v in REAL_CREDENTIALS.items() if k != "HERALD_TWILIO_AUTH_TOKEN"}
    result = run_worker(tmp_path, {**values, "HERALD_ENV": "production", "HERALD_SECRET": STRONG,
                                   "HERALD_PROVIDERS": "email=smtp;sms=twilio"})

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["configuration error: HERALD_TWILIO_AUTH_TOKEN is the development "
                                          "default; set your account's auth token"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "faust").exists(), "stopped before doing anything"


def test_worker__compose_default_secret_exits_2_without_echoing_it(tmp_path: Path) -> None:
    result = run_worker(tmp_path, {"HERALD_ENV": "production", "HERALD_SECRET": "change-me-in-production-please"})

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["configuration error: HERALD_SECRET is a published example or test "
                                          "value; generate one with `openssl rand -base64 32`"], result.stderr
    assert "Traceback" not in result.stderr and "change-me-in" not in result.stderr


# ------------------------------------------------------------------------------------------------ Kafka TLS


def test_kafka_tls__context_verifies_brokers_with_the_ca_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from consumers.topics import kafka_client_kwargs

    ca, cert, key = pem_files(tmp_path)
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca, kafka_ssl_certfile=cert,
                        kafka_ssl_keyfile=key)

    context: ssl.SSLContext = kafka_client_kwargs(settings)["ssl_context"]

    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(part[0] for part in c["subject"]) for c in context.get_ca_certs()]
    assert subjects == [{"commonName": "herald-unit-test"}], "only the configured CA, not the system's"


def test_kafka_tls__encrypted_key_needs_its_password_and_never_prompts(env: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    from consumers.topics import kafka_client_kwargs

    ca, cert, key = pem_files(tmp_path, key_password=b"key-password")
    base: dict[str, Any] = dict(kafka_security_protocol="SSL", kafka_ssl_cafile=ca, kafka_ssl_certfile=cert,
                                kafka_ssl_keyfile=key)

    with pytest.raises(ValueError, match="encrypted; set HERALD_KAFKA_SSL_KEY_PASSWORD"):
        kafka_client_kwargs(Settings(**base))
    with pytest.raises(ValueError, match="HERALD_KAFKA_SSL_KEY_PASSWORD is wrong"):
        kafka_client_kwargs(Settings(**base, kafka_ssl_key_password="not-it"))
    assert kafka_client_kwargs(Settings(**base, kafka_ssl_key_password="key-password"))["ssl_context"]


def test_kafka_tls__unreadable_files_are_named(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from consumers.topics import kafka_client_kwargs
    from consumers.worker import preflight_problems

    ca, cert, _ = pem_files(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    other_key = pem_files(tmp_path / "other")[2]

    with pytest.raises(ValueError, match=r"HERALD_KAFKA_SSL_CAFILE=.*junk.pem holds no usable CA certificate"):
        kafka_client_kwargs(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=junk))
    mismatched = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca, kafka_ssl_certfile=cert,
                          kafka_ssl_keyfile=other_key)
    (line,) = preflight_problems(mismatched)
    assert line.startswith(f"HERALD_KAFKA_SSL_CERTFILE={cert}, HERALD_KAFKA_SSL_KEYFILE={other_key}: ")
    assert "KEY_VALUES_MISMATCH" in line


def test_kafka_tls__faust_gets_the_same_context(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import faust

    from consumers.app import faust_config

    ca, cert, key = pem_files(tmp_path)
    tls: dict[str, Any] = dict(kafka_ssl_cafile=ca, kafka_ssl_certfile=cert, kafka_ssl_keyfile=key)

    ssl_only = faust_config(Settings(kafka_security_protocol="SSL", **tls))["broker_credentials"]
    sasl = faust_config(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                                 kafka_sasl_username="herald", kafka_sasl_password="pw-" + STRONG, **tls)
                        )["broker_credentials"]

    assert isinstance(ssl_only, faust.SSLCredentials)
    assert isinstance(sasl, faust.SASLCredentials)
    assert sasl.mechanism.value == "SCRAM-SHA-512" and sasl.protocol.value == "SASL_SSL"
    for context in (ssl_only.context, sasl.ssl_context):
        assert [dict(p[0] for p in c["subject"]) for c in context.get_ca_certs()] == [
            {"commonName": "herald-unit-test"}]
