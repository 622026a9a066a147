"""modelfleet.serving.systemd_arg: the filter that replaced the ``sd_arg`` macro of four unit templates.

The templates render byte-identical to the macro they replaced (the macro is kept here as the reference),
for the role defaults and for arguments that need escaping or quoting.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from harness import collection_root
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(collection_root()))

from ansible.plugins.test.core import TestModule as AnsibleTests  # noqa: E402
from ansible_collections.modelfleet.serving.plugins.filter import systemd  # noqa: E402

# The macro the four templates carried before the filter, verbatim.
OLD_MACRO = """\
{#- One argument as systemd reads it: specifiers (%) and variables ($) escaped, quoted when needed. -#}
{%- macro sd_arg(arg) -%}
{%- set escaped = arg | string | replace('%', '%%') | replace('$', '$$') -%}
{%- if escaped is search('[\\\\s"\\'\\\\\\\\;]') or escaped | length == 0 -%}
"{{ escaped | replace('\\\\', '\\\\\\\\') | replace('"', '\\\\"') }}"
{%- else -%}
{{ escaped }}
{%- endif -%}
{%- endmacro -%}
"""
TEMPLATES = [
    "roles/prometheus/templates/prometheus.service.j2",
    "roles/prometheus/templates/service-override.conf.j2",
    "roles/alertmanager/templates/modelfleet-retrain-hook.service.j2",
    "roles/alertmanager/templates/service-override.conf.j2",
]
TRICKY = ["plain", "", "with space", "100%", "$HOME", "a\"quote", "it's", "back\\slash", "semi;colon", "tab\there",
          "--command=/usr/bin/retrain --model 'credit risk' 50%", "${MAINPID}", "%n"]
PROMETHEUS_FLAGS = ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/prometheus/metrics2",
                    "--storage.tsdb.retention.time=15d", "--web.listen-address=0.0.0.0:9090", "--web.enable-lifecycle"]
HOOK_FLAGS = ["retrain-hook", "--listen", "127.0.0.1:9095", "--state-file",
              "/var/lib/modelfleet-retrain-hook/state.json", "--cooldown", "1h"]
VARIABLES: dict[str, Any] = {
    "ansible_managed": "Ansible managed", "_prometheus_bin_dir": "/usr/bin", "prometheus_archive_version": "2.53.2",
    "prometheus_archive_install_dir": "/opt/prometheus", "prometheus_storage_path": "/var/lib/prometheus/metrics2",
    "_alertmanager_hook_state_dir": "modelfleet-retrain-hook", "alertmanager_retrain_hook_user": "modelfleet-hook",
    "alertmanager_retrain_hook_config_dir": "/etc/modelfleet-retrain-hook",
    "alertmanager_retrain_hook_executable": "/opt/modelfleet/bin/modelfleet",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.tests.update(AnsibleTests().tests())
    env.filters["modelfleet.serving.systemd_arg"] = systemd.FilterModule().filters()["systemd_arg"]
    return env


def as_before(text: str) -> str:
    """The template as it was: the macro in front, ``x | modelfleet.serving.systemd_arg`` spelled ``sd_arg(x)``."""
    return OLD_MACRO + re.sub(r"(\w+) \| modelfleet\.serving\.systemd_arg", r"sd_arg(\1)", text)


def macro(arg: Any) -> str:
    return environment().from_string(OLD_MACRO + "{{ sd_arg(arg) }}").render(arg=arg)


@pytest.mark.parametrize("arg", [*TRICKY, 9090, 1.5, True])
def test_filter_equals_the_macro(arg: Any) -> None:
    assert systemd.systemd_arg(arg) == macro(arg)


@given(st.text(alphabet=st.sampled_from("ab %$\"'\\; \t=-/"), max_size=12))
def test_filter_equals_the_macro_on_any_text(arg: str) -> None:
    assert systemd.systemd_arg(arg) == macro(arg)


@pytest.mark.parametrize("arg", ["--a=b", "with space", "it's", 'say "hi"', "back\\slash", ""])
def test_quoted_arguments_read_back_unchanged(arg: str) -> None:
    # systemd's unquoting of "..." with \\ and \" escapes is the shell's double-quote rule for these characters.
    assert shlex.split(systemd.systemd_arg(arg)) == [arg]


def test_specifiers_and_variables_are_escaped() -> None:
    assert systemd.systemd_arg("50%") == "50%%"
    assert systemd.systemd_arg("$HOME") == "$$HOME"
    assert systemd.systemd_arg("a b%") == '"a b%%"'


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("extra", [[], TRICKY], ids=["defaults", "tricky"])
def test_templates_render_as_with_the_macro(template: str, extra: list[str]) -> None:
    text = (REPO / template).read_text()
    assert "sd_arg" not in text and "modelfleet.serving.systemd_arg" in text
    flags = PROMETHEUS_FLAGS + extra
    variables = dict(VARIABLES, _prometheus_flags=flags, _alertmanager_flags=flags,
                     _alertmanager_hook_flags=HOOK_FLAGS + extra, alertmanager_retrain_hook_read_write_paths=extra)
    env = environment()
    now = env.from_string(text).render(variables)
    assert now == env.from_string(as_before(text)).render(variables)
    for flag in extra:
        assert systemd.systemd_arg(flag) in now
