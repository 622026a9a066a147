# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Small files written whole and atomically: the rollout state copy, the textfile metrics, the release records,
the router's server state file and the rollout lock (one routine for all: ``replace_atomically``).

A reader sees the old content or the new one, never a part: the new content goes to a temporary file beside
the destination (same directory, same file system), is flushed to disk with its mode and owner set, then renamed
over the destination. Content that is already there is not rewritten (only its mode and owner are corrected).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import base64
import grp
import os
import pwd
import tempfile
import typing as t


class PublishError(Exception):
    """A file that cannot be written, or bad input; the message says which and why."""


def parse_mode(mode: str) -> int:
    """``"0644"`` → 0o644; anything else than 3 or 4 octal digits is refused."""
    text = str(mode).strip()
    if not 3 <= len(text) <= 4 or any(c not in "01234567" for c in text):
        raise PublishError("mode must be an octal mode of 3 or 4 digits such as 0644, not %r" % (mode,))
    return int(text, 8)


def user_id(owner: str | None) -> int:
    """The uid of ``owner`` (a name or a number), -1 (unchanged) for None."""
    if owner is None:
        return -1
    if str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise PublishError("owner %r is not a user on this host" % (owner,)) from None


def group_id(group: str | None) -> int:
    """The gid of ``group`` (a name or a number), -1 (unchanged) for None."""
    if group is None:
        return -1
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PublishError("group %r is not a group on this host" % (group,)) from None


def current(path: str) -> tuple[bytes | None, os.stat_result | None]:
    """The file's content and status, (None, None) when there is none."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise PublishError("cannot read %s: %s" % (path, exc.strerror or exc)) from None


def slurp(path: str) -> dict[str, t.Any]:
    """``path`` as ansible.builtin.slurp returns it (``source``, base64 ``content``, ``encoding``); a file that
    cannot be read has no ``content`` but a ``msg`` saying why (slurp's failure, as data)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return {"source": path, "msg": "cannot read %s: %s" % (path, exc.strerror or exc)}
    return {"source": path, "content": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def publish(path: str, content: str, mode: int, uid: int, gid: int, check: bool) -> dict[str, t.Any]:
    """Make ``path`` hold ``content`` with ``mode`` and owner ``uid``:``gid`` (-1: left as is).

    Returns ``{path, changed, content_changed, before}`` (``before``: the old text, for diffs). Missing
    directories are created. In check mode nothing is written. Raises PublishError naming the path.
    """
    if not os.path.isabs(path):
        raise PublishError("path must be absolute, not %r" % (path,))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        # As ansible.builtin.copy does: the missing directories are created (in check mode: would be).
        if os.path.lexists(directory):
            raise PublishError("cannot write %s: %s is not a directory" % (path, directory))
        if not check:
            make_directories(directory, uid, gid)
    data = content.encode("utf-8")
    old, status = current(path)
    content_changed = old != data
    attributes_changed = status is not None and (
        (status.st_mode & 0o7777) != mode
        or (uid != -1 and status.st_uid != uid)
        or (gid != -1 and status.st_gid != gid)
    )
    result = {"path": path, "changed": content_changed or attributes_changed, "content_changed": content_changed,
              "before": None if old is None else old.decode("utf-8", "replace")}
    if check or not result["changed"]:
        return result
    try:
        if content_changed:
            replace_atomically(path, data, mode, uid, gid)
        else:
            os.chmod(path, mode)
            os.chown(path, uid, gid)
    except OSError as exc:
        raise PublishError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
    return result


def make_directories(directory: str, uid: int, gid: int) -> None:
    """Create ``directory`` and its missing parents (mode 0755 less the umask, owner ``uid``:``gid``)."""
    missing = []
    while directory and not os.path.lexists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    try:
        for created in reversed(missing):
            os.mkdir(created, 0o755)
            os.chown(created, uid, gid)
    except OSError as exc:
        raise PublishError("cannot create the directory %s: %s" % (created, exc.strerror or exc)) from None


def replace_atomically(path: str, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Write ``data`` to ``path`` whole: a temporary file beside it, flushed to disk with ``mode`` and owner
    ``uid``:``gid`` (-1: the writer's), renamed over ``path``. Raises OSError; no temporary file is left behind."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        if uid != -1 or gid != -1:
            os.chown(temporary, uid, gid)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
