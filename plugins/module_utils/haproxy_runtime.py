# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""A small client for HAProxy's runtime API (the ``stats socket ... level admin`` unix socket).

One command per connection (HAProxy's non-interactive mode: it answers and closes). Only the
standard library is used, so it runs with any Python that runs Ansible modules.

Server state comes from two commands: ``show servers state <backend>`` (weights, admin and
operational state as numbers, exactly as HAProxy saves them across reloads) and
``show stat <backend> 4 -1`` (the status text and the last health check, read by column name).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import csv
import errno
import os
import socket
import stat
import time
import typing as t

from ansible_collections.modelfleet.serving.plugins.module_utils.published_files import replace_atomically

WEIGHT_MIN = 0
WEIGHT_MAX = 256

# srv_admin_state bits (HAProxy management guide, "show servers state").
ADMF_FMAINT = 0x01  # forced into maintenance (CLI "set server ... state maint")
ADMF_IMAINT = 0x02  # inherited from a tracked server
ADMF_CMAINT = 0x04  # "disabled" in the configuration
ADMF_FDRAIN = 0x08  # forced into drain (CLI "set server ... state drain")
ADMF_IDRAIN = 0x10  # inherited drain
ADMF_RMAINT = 0x20  # address resolution failure
MAINT_MASK = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT
DRAIN_MASK = ADMF_FDRAIN | ADMF_IDRAIN

# srv_op_state values.
OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}

ADMIN_STATES = ("ready", "drain", "maint")

# Health check results (show stat check_status) that mean the last check passed.
CHECK_PASSED = ("L4OK", "L6OK", "L7OK", "L7OKC")


class RuntimeApiError(Exception):
    """The socket could not be used, or HAProxy refused a command (its reply is in the message)."""


class ServerInfo:
    """What the runtime API says about one server of a backend."""

    __slots__ = (
        "admin",
        "admin_bits",
        "check",
        "check_desc",
        "in_flight",
        "initial_weight",
        "name",
        "operational",
        "port",
        "status",
        "weight",
    )

    def __init__(
        self,
        name: str,
        weight: int,
        initial_weight: int,
        admin_bits: int,
        op_state: int,
        status: str = "",
        check: str = "",
        check_desc: str = "",
        in_flight: int = 0,
        port: int = 0,
    ) -> None:
        self.name = name
        self.weight = weight
        self.initial_weight = initial_weight
        self.admin_bits = admin_bits
        self.admin = admin_state(admin_bits)
        self.operational = OPERATIONAL.get(op_state, str(op_state))
        self.status = status
        self.check = check
        self.check_desc = check_desc
        self.in_flight = in_flight  # requests on the server now plus those queued for it (show stat scur + qcur)
        self.port = port

    @property
    def up(self) -> bool:
        """Up (passed ``rise`` checks), not in maintenance, and its last health check passed.

        Right after HAProxy starts, servers count as up before their first check (status INI): that is not up here.
        """
        return (
            self.operational == "up"
            and not self.admin_bits & MAINT_MASK
            and (not self.check or self.check in CHECK_PASSED)
        )

    def as_dict(self) -> dict[str, t.Any]:
        return dict(
            weight=self.weight,
            initial_weight=self.initial_weight,
            admin=self.admin,
            operational=self.operational,
            status=self.status,
            check=self.check,
            check_desc=self.check_desc,
            up=self.up,
        )


def admin_state(bits: int) -> str:
    """``maint``, ``drain`` or ``ready`` from an srv_admin_state mask (maintenance wins over drain)."""
    if bits & MAINT_MASK:
        return "maint"
    if bits & DRAIN_MASK:
        return "drain"
    return "ready"


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Rows of a ``show servers state`` dump (format version 1) as dicts keyed by its column names."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise RuntimeApiError("unexpected reply to 'show servers state': %s" % _quote(text))
    columns: list[str] = []
    rows = []
    for line in lines[1:]:
        if line.startswith("#"):
            if not columns:
                columns = line[1:].split()
            continue
        if not line.strip():
            continue
        if not columns:
            raise RuntimeApiError("'show servers state' without a header line: %s" % _quote(text))
        rows.append(dict(zip(columns, line.split())))  # noqa: B905 (targets without strict=)
    return rows


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """Rows of a ``show stat`` CSV dump as dicts keyed by its header (``# pxname,svname,...``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError("unexpected reply to 'show stat': %s" % _quote(text))
    # HAProxy quotes fields that contain commas (check descriptions can): read it as real CSV.
    rows = list(csv.reader([lines[0][2:], *lines[1:]]))
    return [dict(zip(rows[0], row)) for row in rows[1:]]  # noqa: B905 (targets without strict=)


def _count(value: t.Optional[str]) -> int:
    """A numeric ``show stat`` / ``show servers state`` field; empty or ``-`` is 0."""
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _quote(text: str, limit: int = 300) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


class RuntimeApi:
    """HAProxy's runtime API on a unix socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, command: str) -> str:
        """Send one command; return HAProxy's whole reply (it closes the connection after it)."""
        if "\n" in command or ";" in command:
            raise RuntimeApiError("one command at a time, without ';' or newlines: %r" % command)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise RuntimeApiError(self._connect_error(exc)) from None
            chunks = []
            try:
                sock.sendall(command.encode("ascii") + b"\n")
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except socket.timeout:
                raise RuntimeApiError(
                    "no complete reply to %r on %s within %.1f s" % (command, self.path, self.timeout)
                ) from None
            except OSError as exc:
                raise RuntimeApiError("%r on %s failed: %s" % (command, self.path, exc)) from None
        finally:
            sock.close()
        reply = b"".join(chunks).decode("utf-8", "replace")
        if reply.strip() == "Permission denied":
            raise RuntimeApiError(
                "HAProxy refused %r on %s: Permission denied (the socket needs 'level admin' in "
                "haproxy.cfg: stats socket %s mode 660 level admin)" % (command, self.path, self.path)
            )
        return reply

    def _connect_error(self, exc: OSError) -> str:
        code = exc.errno
        if code == errno.ENOENT:
            return (
                "HAProxy runtime API socket %s does not exist: is haproxy running with "
                "'stats socket %s level admin' in its configuration?" % (self.path, self.path)
            )
        if code in (errno.EACCES, errno.EPERM):
            return (
                "permission denied on HAProxy runtime API socket %s: run as root (become: true) or as a member "
                "of the socket's group" % self.path
            )
        if code in (errno.ECONNREFUSED, errno.ENOTSOCK) and not _is_socket(self.path):
            return "%s is not a socket (check 'stats socket' in haproxy.cfg)" % self.path
        if code == errno.ECONNREFUSED:
            return "nothing listens on %s (a stale socket file: is haproxy running?)" % self.path
        return "cannot connect to HAProxy runtime API socket %s: %s" % (self.path, exc)

    def change(self, command: str) -> None:
        """Send a command that answers nothing on success; anything in the reply is HAProxy's error."""
        reply = self.command(command).strip()
        if reply:
            raise RuntimeApiError("HAProxy refused %r: %s" % (command, reply))

    def servers(self, backend: str) -> dict[str, ServerInfo]:
        """Every server of ``backend`` by name, in configuration order."""
        if not backend or any(c.isspace() for c in backend) or ";" in backend:
            raise RuntimeApiError("invalid backend name %r" % backend)
        state_reply = self.command("show servers state %s" % backend)
        if not state_reply.startswith("1"):
            if "find backend" in state_reply:
                raise RuntimeApiError("unknown backend %r (HAProxy: %s)" % (backend, _quote(state_reply)))
            raise RuntimeApiError("'show servers state %s' failed: %s" % (backend, _quote(state_reply)))
        stat_reply = self.command("show stat %s 4 -1" % backend)
        stats = {}
        if stat_reply.startswith("# "):
            stats = {row.get("svname", ""): row for row in parse_stat_csv(stat_reply) if row.get("pxname") == backend}
        found = {}
        for row in parse_servers_state(state_reply):
            if row.get("be_name") != backend:
                continue
            name = row["srv_name"]
            stat = stats.get(name, {})
            found[name] = ServerInfo(
                name,
                int(row["srv_uweight"]),
                int(row["srv_iweight"]),
                int(row["srv_admin_state"]),
                int(row["srv_op_state"]),
                status=stat.get("status", ""),
                check=stat.get("check_status", ""),
                check_desc=stat.get("check_desc", ""),
                in_flight=_count(stat.get("scur")) + _count(stat.get("qcur")),
                port=_count(row.get("srv_port")),
            )
        return found

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise RuntimeApiError(
                "weight %d of %s/%s is out of range %d-%d" % (weight, backend, server, WEIGHT_MIN, WEIGHT_MAX)
            )
        self.change("set server %s/%s weight %d" % (backend, server, weight))

    def set_state(self, backend: str, server: str, state: str) -> None:
        if state not in ADMIN_STATES:
            raise RuntimeApiError("state must be one of %s, not %r" % (", ".join(ADMIN_STATES), state))
        self.change("set server %s/%s state %s" % (backend, server, state))

    def save_state(self, path: str) -> None:
        """Write ``show servers state`` (all backends) to ``path`` atomically: what the next start loads."""
        dump = self.command("show servers state")
        parse_servers_state(dump)  # refuse to write anything but a well-formed dump
        replace_atomically(path, dump.encode("utf-8"), 0o644)

    def wait_up(
        self, backend: str, names: t.Iterable[str], timeout: float, interval: float = 0.2
    ) -> tuple[dict[str, ServerInfo], float]:
        """Poll until every server in ``names`` is up; return the last reading and the seconds waited.

        Raises RuntimeApiError naming the servers still not up (with their last check) on timeout.
        """
        wanted = list(names)
        started = time.monotonic()
        while True:
            current = self.servers(backend)
            missing = [name for name in wanted if name not in current]
            if missing:
                raise RuntimeApiError("backend %r has no server %s" % (backend, ", ".join(missing)))
            pending = [name for name in wanted if not current[name].up]
            waited = time.monotonic() - started
            if not pending:
                return current, waited
            if waited >= timeout:
                details = ", ".join(
                    "%s (%s, check %s%s)"
                    % (
                        name,
                        current[name].status or current[name].operational,
                        current[name].check or "-",
                        ": " + current[name].check_desc if current[name].check_desc else "",
                    )
                    for name in pending
                )
                raise RuntimeApiError(
                    "timed out after %.0f s waiting for %s/%s to pass health checks: %s"
                    % (timeout, backend, "+".join(pending), details)
                )
            time.sleep(interval)
