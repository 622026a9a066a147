#!/usr/bin/env python
# modelfleet: ansible-test get-pip stand-in
"""Offline stand-in for the ``get-pip-<version>.py`` script that ansible-test downloads.

ansible-test bootstraps pip into each virtual environment it creates by running
``get-pip-<version>.py`` fetched from ci-files.testing.ansible.com, a host this network cannot reach.
It first looks for a cached copy at ``~/.ansible/test/cache/get_pip_<version>.py``; ``make sanity``
installs this file there.

Like the real script, it takes ``pip install`` arguments (e.g. ``pip==24.2``). It bootstraps pip
from the interpreter's bundled wheel (``ensurepip``) and then lets that pip install the requested
packages from the configured package index. ``--no-setuptools``/``--no-wheel`` are options of the
real get-pip only, so they are dropped.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main(argv: list[str]) -> int:
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True)
    args = [arg for arg in argv if arg not in GET_PIP_ONLY_OPTIONS]
    if not args:
        return 0
    return subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
