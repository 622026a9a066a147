# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""A lock file kept on a fleet host: who holds it, since when, and the rules to take, keep and break it.

Standard library only: the lock is taken before the modelfleet runtime is installed on a new host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import time

from ansible_collections.modelfleet.serving.plugins.module_utils.published_files import replace_atomically

FORMAT = 1


class LockError(Exception):
    """The lock cannot be taken (held by another owner) or read."""


def describe(holder, now):
    """``owner on controller (pid N) since <UTC time>, N s ago`` for a lock's holder."""
    since = holder.get("acquired_at")
    if isinstance(since, (int, float)):
        when = "since %s, %d s ago" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)), max(0, now - since))
    else:
        when = "since an unknown time"
    return "%s on %s (pid %s) %s" % (holder.get("owner", "?"), holder.get("controller", "?"),
                                     holder.get("pid", "?"), when)


def read(path):
    """The holder recorded in the lock file, or None where there is no lock.

    A file that is not a lock this module wrote counts as held by an unknown owner since its modification time.
    """
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise LockError("%s cannot be read: %s" % (path, exc)) from None
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    if not isinstance(holder, dict) or holder.get("format") != FORMAT:
        try:
            since = os.stat(path).st_mtime
        except OSError:
            since = None
        return {"format": FORMAT, "owner": "unknown (not a lock file: %s)" % path, "controller": "?", "pid": "?",
                "acquired_at": since}
    return holder


def _write_new(path, holder):
    """Create the lock file; False when it exists already (another run took it first)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise LockError("%s cannot be created: %s" % (path, exc)) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(holder, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def acquire(path, owner, controller, pid, purpose, now, stale_before=None, check=False):
    """Take the lock at ``path`` for ``owner``; returns (changed, message, holder, broken).

    The same owner takes it again (a rerun after an interruption). Another owner's lock is refused with a
    LockError that names it, unless it was taken before ``stale_before`` (seconds since the epoch): then it is
    broken, and ``broken`` is the holder it had.
    """
    mine = {"format": FORMAT, "owner": owner, "controller": controller, "pid": pid, "purpose": purpose,
            "acquired_at": now}
    holder = read(path)
    broken = None
    if holder is not None and holder.get("owner") != owner:
        since = holder.get("acquired_at")
        stale = stale_before is not None and (not isinstance(since, (int, float)) or since < stale_before)
        if not stale:
            raise LockError(
                "%s is locked by %s%s. Another deploy or rollback of this model is under way: wait for it to end. "
                "If its controller is gone, break the lock explicitly (rollout_break_lock=true)."
                % (path, describe(holder, now), " for " + holder["purpose"] if holder.get("purpose") else ""))
        broken = holder
    if holder is not None and broken is None:
        # Ours already (a rerun from the same owner): keep it, with this run's pid and time.
        if check:
            return True, "%s is held by this owner already: would record pid %s" % (path, pid), mine, None
        _replace(path, mine)
        return True, "%s is held by this owner already: now by pid %s" % (path, pid), mine, None
    if check:
        verb = "would break the lock of %s and take it" % describe(broken, now) if broken else "would take it"
        return True, "%s: %s" % (path, verb), mine, broken
    if broken is not None:
        _remove(path)
    if not _write_new(path, mine):
        raise LockError("%s was taken by %s at the same moment; run again once it is released"
                        % (path, describe(read(path) or {}, now)))
    if broken is not None:
        return True, "%s: broke the lock of %s and took it" % (path, describe(broken, now)), mine, broken
    return True, "%s: taken" % path, mine, None


def release(path, owner, now, check=False):
    """Remove the lock if ``owner`` holds it; returns (changed, message). Another owner's lock stays."""
    holder = read(path)
    if holder is None:
        return False, "%s: not locked" % path
    if holder.get("owner") != owner:
        return False, "%s is held by %s, not by %s: left in place" % (path, describe(holder, now), owner)
    if not check:
        _remove(path)
    return True, "%s: released" % path


def _replace(path, holder):
    replace_atomically(path, (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8"), 0o644)


def _remove(path):
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise LockError("%s cannot be removed: %s" % (path, exc)) from None
