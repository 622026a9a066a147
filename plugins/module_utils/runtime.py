# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Thin glue between Ansible modules and the modelfleet Python runtime.

The heavy logic lives in the ``modelfleet`` distribution; modules import it through
:func:`import_runtime` at run time so that a missing install becomes a clear
``missing_required_lib`` failure instead of a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import traceback

from ansible.module_utils.basic import missing_required_lib

RUNTIME_PACKAGE = "modelfleet"
INSTALL_HINT = "pip install 'modelfleet[convert]' into the Python that runs this module (ansible_python_interpreter)"


def import_runtime(module, *names):
    """Import ``modelfleet.<name>`` for each name, or fail the module with an install hint."""
    imported = []
    try:
        for name in names:
            imported.append(importlib.import_module("%s.%s" % (RUNTIME_PACKAGE, name)))
    except ImportError:
        module.fail_json(msg=missing_required_lib(RUNTIME_PACKAGE, reason=INSTALL_HINT),
                         exception=traceback.format_exc())
    return imported


def fail_with(module, error, **extra):
    """Fail the module with a modelfleet error's message (and its spec problems when it has them)."""
    problems = getattr(error, "problems", None)
    if problems:
        extra["problems"] = problems
    module.fail_json(msg=str(error), **extra)
