"""The exporter-toolkit style web config: parsing, errors, basic auth with bcrypt, reload on change."""

from __future__ import annotations

import base64
import os
import ssl
from pathlib import Path

import bcrypt
import pytest

from modelfleet.drift.webconfig import BasicAuth, WebConfigError, load_web_config

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")


def _config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tls").mkdir(exist_ok=True)
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / "tls" / name).write_text("placeholder")
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_full_config_with_relative_paths(tmp_path: Path) -> None:
    path = _config(tmp_path, f"""
tls_server_config:
  cert_file: tls/server.crt
  key_file: tls/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: tls/ca.crt
  min_version: TLS13
http_server_config:
  headers: {{X-Frame-Options: deny}}
basic_auth_users:
  prometheus: '{HASH}'
""")
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "tls" / "server.crt"
    options = config.tls.uvicorn_options()
    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED and options["ssl_ca_certs"].endswith("ca.crt")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    config.tls.apply_versions(context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.headers == {"X-Frame-Options": "deny"}
    assert set(config.users) == {"prometheus"}


def test_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    config = load_web_config(_config(tmp_path, ""))
    assert config.tls is None and not config.users


@pytest.mark.parametrize(("text", "message"), [
    ("tls_server_config: {cert_file: tls/server.crt}", "needs cert_file and key_file"),
    ("tls_server_config: {cert_file: tls/absent.crt, key_file: tls/server.key}", "does not exist"),
    ("tls_server_config: {cert_file: tls/server.crt, key_file: tls/server.key, cipher_suites: [x]}", "unsupported"),
    ("tls_server_config: {cert_file: tls/server.crt, key_file: tls/server.key, client_auth_type: Bogus}",
     "client_auth_type must be"),
    ("tls_server_config: {cert_file: tls/server.crt, key_file: tls/server.key,"
     " client_auth_type: RequireAndVerifyClientCert}", "needs client_ca_file"),
    ("tls_server_config: {cert_file: tls/server.crt, key_file: tls/server.key, min_version: TLS99}", "min_version"),
    ("basic_auth_users: {alice: plaintext}", "expected a bcrypt hash"),
    ("basic_auth_users: {alice: '$2y$10$short'}", "not a valid bcrypt hash"),
    ("rate_limit: {interval: 1s}", "unsupported key"),
    ("basic_auth_users: [alice]", "expected a mapping"),
    ("tls_server_config: [", "not valid YAML"),
])
def test_invalid_configs_are_rejected_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WebConfigError, match=message):
        load_web_config(_config(tmp_path, text))


def test_basic_auth_checks_users_and_caches(tmp_path: Path) -> None:
    path = _config(tmp_path, f"basic_auth_users: {{prometheus: '{HASH}'}}")
    auth = BasicAuth(path, load_web_config(path))
    assert auth.enabled
    assert auth.check(_basic("prometheus", "s3cret"))
    assert auth.check(_basic("prometheus", "s3cret"))  # cached
    assert not auth.check(_basic("prometheus", "wrong"))
    assert not auth.check(_basic("mallory", "s3cret"))
    assert not auth.check(None)
    assert not auth.check(b"Bearer abc")
    assert not auth.check(b"Basic !!!not-base64")


def test_users_are_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = _config(tmp_path, f"basic_auth_users: {{prometheus: '{HASH}'}}")
    auth = BasicAuth(path, load_web_config(path))
    other = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"basic_auth_users: {{grafana: '{other}'}}")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert auth.check(_basic("grafana", "new"))
    assert not auth.check(_basic("prometheus", "s3cret"))
    path.write_text("basic_auth_users: {broken: x}")  # an invalid edit keeps the previous users
    os.utime(path, (stat.st_atime, stat.st_mtime + 10))
    assert auth.check(_basic("grafana", "new"))
