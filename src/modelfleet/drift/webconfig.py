"""TLS and basic authentication from a web-config file, in the format of Prometheus' exporter-toolkit.

```yaml
tls_server_config:
  cert_file: server.crt          # relative paths are relative to this file
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # optional: NoClientCert (default),
  client_ca_file: clients.crt                    #   VerifyClientCertIfGiven, RequireAndVerifyClientCert
  min_version: TLS12             # optional: TLS10 … TLS13 (default TLS12, as exporter-toolkit)
  max_version: TLS13             # optional
http_server_config:
  headers: {X-Frame-Options: deny}               # optional: added to every response
basic_auth_users:                # user: bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')
  prometheus: $2y$10$...
```

As in exporter-toolkit, unknown keys are errors, every endpoint needs the credentials when users
are configured (401 with ``WWW-Authenticate: Basic``), an unknown user costs a bcrypt comparison
like a known one, and results are cached so that scrapes do not pay bcrypt's cost each time. The
users are re-read when the file changes; the TLS files are read at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from modelfleet.errors import ModelfleetError

log = logging.getLogger(__name__)
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                 "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_CACHE_SIZE = 1024


@cache
def _dummy_hash() -> bytes:
    """Compared against when the user is unknown, so that unknown and known users take the same time."""
    return bcrypt.hashpw(b"modelfleet", bcrypt.gensalt(rounds=10))


class WebConfigError(ModelfleetError):
    """The web-config file is missing, not YAML, or has invalid settings."""


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config`` (TLS versions are set by :meth:`apply_versions`)."""
        options: dict[str, Any] = {"ssl_certfile": str(self.cert_file), "ssl_keyfile": str(self.key_file),
                                   "ssl_cert_reqs": _CLIENT_AUTH[self.client_auth_type]}
        if self.client_ca_file is not None:
            options["ssl_ca_certs"] = str(self.client_ca_file)
        return options

    def apply_versions(self, context: ssl.SSLContext) -> None:
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = _TLS_VERSIONS[self.max_version]


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: expected a mapping")
    return value


def _file(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{where}: expected a file path")
    path = base / value
    if not path.is_file():
        raise WebConfigError(f"{where}: {path} does not exist")
    return path


def _tls(base: Path, raw: dict[str, Any], source: str) -> TLSConfig | None:
    if not raw:
        return None
    unknown = sorted(set(raw) - _TLS_KEYS)
    if unknown:
        raise WebConfigError(f"{source}: tls_server_config: unsupported key(s) {unknown}")
    if "cert_file" not in raw or "key_file" not in raw:
        raise WebConfigError(f"{source}: tls_server_config needs cert_file and key_file")
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth in _UNSUPPORTED_CLIENT_AUTH:
        raise WebConfigError(f"{source}: client_auth_type {auth} is not supported (client certificates are "
                             "verified or not asked for): use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(f"{source}: client_auth_type must be one of {sorted(_CLIENT_AUTH)}")
    ca = raw.get("client_ca_file")
    if auth != "NoClientCert" and ca is None:
        raise WebConfigError(f"{source}: client_auth_type {auth} needs client_ca_file")
    versions = [raw.get("min_version", "TLS12"), raw.get("max_version")]
    for name, version in zip(("min_version", "max_version"), versions, strict=True):
        if version is not None and version not in _TLS_VERSIONS:
            raise WebConfigError(f"{source}: {name} must be one of {sorted(_TLS_VERSIONS)}")
    return TLSConfig(_file(base, raw["cert_file"], f"{source}: cert_file"),
                     _file(base, raw["key_file"], f"{source}: key_file"), auth,
                     _file(base, ca, f"{source}: client_ca_file") if ca is not None else None,
                     versions[0] or "TLS12", versions[1])


def _users(raw: dict[str, Any], source: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"{source}: basic_auth_users.{user}: expected a bcrypt hash ($2y$..., $2b$...)")
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise WebConfigError(f"{source}: basic_auth_users.{user}: not a valid bcrypt hash") from None
        users[user] = hashed.encode()
    return users


def load_web_config(path: Path) -> WebConfig:
    """Parse and check a web-config file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {exc}") from None
    data = _mapping(data, str(path))
    unknown = sorted(set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"})
    if unknown:
        raise WebConfigError(f"{path}: unsupported key(s) {unknown}")
    http = _mapping(data.get("http_server_config"), f"{path}: http_server_config")
    if set(http) - {"headers"}:
        raise WebConfigError(f"{path}: http_server_config: only headers is supported")
    headers = _mapping(http.get("headers"), f"{path}: http_server_config.headers")
    base = path.resolve().parent
    return WebConfig(tls=_tls(base, _mapping(data.get("tls_server_config"), "tls_server_config"), str(path)),
                     users=_users(_mapping(data.get("basic_auth_users"), "basic_auth_users"), str(path)),
                     headers={str(k): str(v) for k, v in headers.items()})


class BasicAuth:
    """Checks ``Authorization`` headers against the web config's users (re-read when the file changes)."""

    def __init__(self, path: Path | None, config: WebConfig) -> None:
        self.path = path
        self.users = config.users
        self._stamp = self._mtime()
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path is not None else None
        except OSError:
            return None

    def _reload(self) -> None:
        stamp = self._mtime()
        if stamp == self._stamp or self.path is None:
            return
        try:
            users = load_web_config(self.path).users
        except WebConfigError as exc:
            log.error("web config not reloaded, keeping the previous users: %s", exc)
            return
        with self._lock:
            self.users, self._stamp = users, stamp
            self._cache.clear()

    def check(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries valid credentials (may run bcrypt: call off-loop)."""
        self._reload()
        if not self.users:
            return True
        if header is None or header[:6].lower() != b"basic ":
            return False
        try:
            user_b, _colon, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
            user = user_b.decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join([user_b, password, hashed or b""])).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        valid = bcrypt.checkpw(password, hashed or _dummy_hash()) and hashed is not None
        with self._lock:
            self._cache[key] = valid
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return valid
