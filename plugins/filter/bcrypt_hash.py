# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The bcrypt_hash filter: a password's bcrypt hash for web configs, computed on the controller.

Ansible's ``password_hash('bcrypt')`` needs passlib, which does not work with bcrypt 5; this filter uses
the ``bcrypt`` package modelfleet already depends on. The salt is derived from the password and a seed
(e.g. host and user), so a rerun renders the same hash and changes nothing on the host.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import hashlib

from ansible.errors import AnsibleFilterError

try:
    import bcrypt
except ImportError:  # reported when the filter is used
    bcrypt = None

# bcrypt's base64 alphabet; the 22nd character of a salt carries 2 bits, so it is one of ".Oeu".
_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _salt(password, seed, rounds):
    digest = hashlib.sha256(("modelfleet bcrypt salt\0%s\0%s" % (seed, password)).encode("utf-8")).digest()
    chars = "".join(_ALPHABET[b % 64] for b in digest[:21]) + ".Oeu"[digest[21] % 4]
    return ("$2b$%02d$%s" % (rounds, chars)).encode("ascii")


def bcrypt_hash(password, seed="", rounds=10):
    """The ``$2y$`` bcrypt hash of ``password`` (Prometheus's web config), the same for the same seed."""
    if bcrypt is None:
        raise AnsibleFilterError("bcrypt_hash needs the Python package bcrypt on the controller (pip install bcrypt)")
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("bcrypt_hash: the password must be a non-empty string")
    secret = password.encode("utf-8")
    if len(secret) > 72:
        raise AnsibleFilterError(
            "bcrypt_hash: bcrypt uses at most 72 bytes of a password; this one has %d" % len(secret))
    if not isinstance(rounds, int) or not 4 <= rounds <= 31:
        raise AnsibleFilterError("bcrypt_hash: rounds must be an integer from 4 to 31, not %r" % (rounds,))
    hashed = bcrypt.hashpw(secret, _salt(password, str(seed), rounds)).decode("ascii")
    return "$2y$" + hashed[4:]


class FilterModule(object):
    """modelfleet.serving filters."""

    def filters(self):
        return {"bcrypt_hash": bcrypt_hash}
