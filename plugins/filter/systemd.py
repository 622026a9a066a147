# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: systemd_arg
short_description: Quote one command-line argument the way a systemd unit file reads it
version_added: "0.1.0"
description:
  - Returns the argument ready to go into C(ExecStart=) (or another command line or path list of a unit
    file), so that systemd passes it to the program unchanged.
  - Specifiers are escaped (C(%) becomes C(%%)) and so are variable references (C($) becomes C($$)).
  - An argument that is empty or holds whitespace, a quote, a backslash or a semicolon is put in double quotes,
    with backslashes and double quotes escaped inside; any other argument is returned as it is.
author:
  - modelfleet contributors (@modelfleet)
options:
  _input:
    description: The argument (anything; it is turned into text first).
    type: raw
    required: true
seealso:
  - name: systemd.service(5), Command lines
    description: How systemd splits and unquotes C(ExecStart=).
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html#Command%20lines
"""

EXAMPLES = r"""
- name: A unit whose ExecStart survives flags with spaces and percent signs
  ansible.builtin.copy:
    dest: /etc/systemd/system/example.service
    mode: "0644"
    content: |
      [Service]
      ExecStart=/usr/bin/example{% for flag in example_flags %} {{ flag | modelfleet.serving.systemd_arg }}{% endfor %}
"""

RETURN = r"""
_value:
  description: The argument as a unit file must spell it.
  type: str
  sample: '"--web.page-title=Fleet 100%%"'
"""

import re

from ansible.module_utils.common.text.converters import to_text

_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


def systemd_arg(arg):
    """One argument as systemd reads it: specifiers (%) and variables ($) escaped, quoted when needed."""
    escaped = to_text(arg).replace("%", "%%").replace("$", "$$")
    if escaped and not _NEEDS_QUOTES.search(escaped):
        return escaped
    return '"%s"' % escaped.replace("\\", "\\\\").replace('"', '\\"')


class FilterModule(object):
    """systemd unit file filters."""

    def filters(self):
        return {"systemd_arg": systemd_arg}
