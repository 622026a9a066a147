# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The tree_digest lookup: a SHA-256 of each file or directory tree given, on the controller.

deploy_model.yml fingerprints what its host-level roles are made of (their files, the runtime's wheelhouse)
to skip them on hosts where nothing they depend on changed since they last ran.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: tree_digest
version_added: "0.1.0"
short_description: A SHA-256 of each file or directory tree, on the controller
description:
  - Returns, for each term, the hex SHA-256 over every regular file under it (each file's path relative to the term
    and its bytes, in sorted order). The same content under the same names gives the same digest wherever it lies;
    a changed, added, removed or renamed file changes it.
  - A term that is a file contributes that file. Python caches (C(__pycache__) directories, C(*.pyc) files) and
    symbolic links to directories are left out; other symbolic links are followed.
  - A missing path is an error, not a digest of nothing.
options:
  _terms:
    description: Files or directories on the controller.
    type: list
    elements: path
    required: true
author:
  - modelfleet contributors (@modelfleet)
"""

EXAMPLES = r"""
- name: Fingerprint two roles and a wheelhouse
  ansible.builtin.set_fact:
    stack_digests: >-
      {{ query('modelfleet.serving.tree_digest', playbook_dir ~ '/../roles/router', '/srv/wheelhouse.tar') }}
"""

RETURN = r"""
_raw:
  description: One hex SHA-256 digest (64 characters) per term, in the order of the terms.
  type: list
  elements: str
"""

import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

_CHUNK = 1 << 20


def _files(root):
    """(relative path, absolute path) of every regular file under ``root``, sorted by relative path."""
    if os.path.isfile(root):
        return [(os.path.basename(root), root)]
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".pyc") or not os.path.isfile(path):
                continue
            found.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    return sorted(found)


def tree_digest(root):
    """The hex SHA-256 over every file under ``root`` (a file or a directory), by relative name."""
    if not os.path.exists(root):
        raise AnsibleLookupError("tree_digest: %s does not exist on the controller" % root)
    digest = hashlib.sha256()
    for relative, path in _files(root):
        digest.update(("%s\0" % relative).encode("utf-8"))
        digest.update(_file_digest(path))
    return digest.hexdigest()


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        chunk = handle.read(_CHUNK)
        while chunk:
            digest.update(chunk)
            chunk = handle.read(_CHUNK)
    return digest.digest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not terms:
            raise AnsibleLookupError("tree_digest: give at least one file or directory")
        return [tree_digest(os.path.abspath(os.path.expanduser(str(term)))) for term in terms]
