# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Merge the ``nvidia`` container runtime into Docker's ``daemon.json`` and containerd's ``config.toml``.

Every key the host already has is kept (registry mirrors, log options, other runtimes, containerd's
``SystemdCgroup``); only the runtime's own entries and, when asked, the default runtime change. Text that
does not parse is an error and nothing is rewritten. containerd's TOML is edited with tomlkit, which keeps
comments and layout (Debian and Ubuntu ship it as python3-tomlkit).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import json
import typing as t

try:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError
    HAS_TOMLKIT = True
except ImportError:  # only containerd needs it; the module reports it as a missing library
    HAS_TOMLKIT = False

#: containerd's CRI plugin per configuration version (1.x writes version 2, 2.x version 3).
CRI_RUNTIME_PLUGIN = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}


class MergeError(Exception):
    """The existing configuration cannot be merged into (it does not parse, or has an unexpected shape)."""


class Merge(t.NamedTuple):
    text: str
    changed: bool
    runtimes: t.List[str]
    default_runtime: t.Optional[str]


def merge_docker(text: str, name: str, binary: str, set_default: bool, path: str = "daemon.json") -> Merge:
    """``daemon.json`` with ``runtimes.<name> = {path: binary}`` (and ``default-runtime`` when asked)."""
    if text.strip():
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MergeError("%s is not valid JSON (%s); it was left untouched" % (path, exc)) from None
    else:
        data = {}
    if not isinstance(data, dict):
        raise MergeError("%s holds a JSON %s, not an object; it was left untouched" % (path, type(data).__name__))
    runtimes = data.get("runtimes", {})
    if not isinstance(runtimes, dict):
        raise MergeError("%s: 'runtimes' is a %s, not an object; it was left untouched"
                         % (path, type(runtimes).__name__))
    wanted = dict(runtimes.get(name) or {}) if isinstance(runtimes.get(name), dict) else {}
    wanted["path"] = binary
    merged = dict(data)
    merged["runtimes"] = dict(runtimes)
    merged["runtimes"][name] = wanted
    if set_default:
        merged["default-runtime"] = name
    changed = merged != data
    new_text = json.dumps(merged, indent=4) + "\n" if changed else text
    return Merge(new_text, changed, sorted(merged["runtimes"]), merged.get("default-runtime"))


def _table(parent: t.Any, key: str, where: str) -> t.Any:
    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=True)
    value = parent[key]
    if not isinstance(value, dict):
        raise MergeError("%s.%s is a %s, not a table; the file was left untouched" % (where, key, type(value).__name__))
    return value


def merge_containerd(text: str, name: str, binary: str, set_default: bool, systemd_cgroup: t.Optional[bool] = None,
                     path: str = "config.toml", default_version: int = 2) -> Merge:
    """containerd's config with the CRI runtime ``<name>`` (runc v2 shim running ``binary``).

    ``SystemdCgroup`` of the new runtime follows ``systemd_cgroup``, else runc's setting in the same file,
    else it is left out (containerd's default). runc's and every other runtime's settings stay as they are.
    """
    if not HAS_TOMLKIT:
        raise MergeError("tomlkit is needed to merge containerd's configuration (apt install python3-tomlkit)")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise MergeError("%s is not valid TOML (%s); it was left untouched" % (path, exc)) from None
    before = doc.unwrap()
    version = doc.get("version")
    if version is None and not before:
        doc["version"] = version = default_version
    if version not in CRI_RUNTIME_PLUGIN:
        raise MergeError("%s has configuration version %r; only versions 2 and 3 are supported (run "
                         "'containerd config migrate' first); it was left untouched" % (path, version))
    plugin = CRI_RUNTIME_PLUGIN[version]
    where = "plugins.%s" % json.dumps(plugin)
    cri = _table(_table(doc, "plugins", path), plugin, path)
    engine = _table(cri, "containerd", where)
    runtimes = _table(engine, "runtimes", where + ".containerd")
    runc_options = runtimes.get("runc", {}).get("options", {}) if isinstance(runtimes.get("runc"), dict) else {}
    if systemd_cgroup is None and isinstance(runc_options, dict) and "SystemdCgroup" in runc_options:
        systemd_cgroup = bool(runc_options["SystemdCgroup"])
    if name not in runtimes:
        runtimes[name] = tomlkit.table()
    runtime = _table(runtimes, name, where + ".containerd.runtimes")
    if runtime.get("runtime_type") != "io.containerd.runc.v2":
        runtime["runtime_type"] = "io.containerd.runc.v2"
    if "options" not in runtime:
        runtime["options"] = tomlkit.table()
    options = _table(runtime, "options", where + ".containerd.runtimes." + name)
    if options.get("BinaryName") != binary:
        options["BinaryName"] = binary
    if systemd_cgroup is not None and options.get("SystemdCgroup") != systemd_cgroup:
        options["SystemdCgroup"] = systemd_cgroup
    if set_default and engine.get("default_runtime_name") != name:
        engine["default_runtime_name"] = name
    after = doc.unwrap()
    changed = after != before
    return Merge(tomlkit.dumps(doc) if changed else text, changed, sorted(runtimes.unwrap()),
                 engine.get("default_runtime_name"))
