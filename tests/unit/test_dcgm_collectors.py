"""The dcgm_exporter role's collectors: every DCGM field our monitoring uses is collected by default, every
field name is one dcgm-exporter knows, and an unknown name fails the role with the name in the message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import collection_root

from modelfleet.gpu import dcgm

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/dcgm_exporter"
UPSTREAM = REPO / "tests/integration/fixtures/dashboards/dcgm-default-counters.csv"


def role_defaults() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    return data


def known_fields() -> dict[str, dict[str, str]]:
    fields: dict[str, dict[str, str]] = yaml.safe_load((ROLE / "vars/main.yml").read_text())["_dcgm_exporter_fields"]
    return fields


def monitoring_files() -> list[Path]:
    return sorted((REPO / "monitoring/rules").glob("*.yml")) + sorted((REPO / "monitoring/dashboards").glob("*.json"))


def test_defaults_collect_every_field_monitoring_uses() -> None:
    used = dcgm.fields_used(monitoring_files())
    assert len(used) >= 20, f"the GPU rules and dashboard name DCGM fields ({sorted(used)})"
    collectors = role_defaults()["dcgm_exporter_collectors"]
    assert isinstance(collectors, list)
    assert sorted(used - set(collectors)) == []


def test_defaults_include_dcgm_exporters_own_defaults() -> None:
    enabled = {name for name, f in dcgm.parse_counters(UPSTREAM.read_text()).items() if f.enabled}
    collectors = role_defaults()["dcgm_exporter_collectors"]
    assert isinstance(collectors, list) and sorted(enabled - set(collectors)) == []


def test_known_fields_match_dcgm_exporters_file() -> None:
    upstream = dcgm.parse_counters(UPSTREAM.read_text(), include_commented=True)
    known = known_fields()
    assert set(known) == set(upstream)
    assert {n: f["type"] for n, f in known.items()} == {n: f.type for n, f in upstream.items()}
    dcgm.check_collectors(role_defaults()["dcgm_exporter_collectors"], known)  # type: ignore[arg-type]


def test_parse_and_check() -> None:
    text = "# comment\nDCGM_FI_DEV_GPU_UTIL, gauge, GPU utilization (in %).\n# DCGM_FI_DEV_SERIAL, label, Serial\n"
    assert list(dcgm.parse_counters(text)) == ["DCGM_FI_DEV_GPU_UTIL"]
    assert list(dcgm.parse_counters(text, include_commented=True)) == ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_SERIAL"]
    with pytest.raises(dcgm.CollectorsError, match=r"unknown DCGM field\(s\): DCGM_FI_DEV_GPU_UTILIZATION, DCGM_FI_X"):
        dcgm.check_collectors(["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTILIZATION", "DCGM_FI_X"], known_fields())


@pytest.mark.parametrize("line", ["DCGM_FI_DEV_GPU_UTIL, gauge\n", "DCGM_FI_DEV_GPU_UTIL, meter, help\n"])
def test_parse_rejects_bad_rows(line: str) -> None:
    with pytest.raises(dcgm.CollectorsError, match=r"line 1: .* is not 'DCGM_FI_FIELD, <gauge\|counter\|label>, help'"):
        dcgm.parse_counters(line)


def test_exposition_fields() -> None:
    text = ('# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n'
            'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",DCGM_FI_DRIVER_VERSION="570.86.15"} 37\n')
    assert dcgm.exposition_fields(text) == {"DCGM_FI_DEV_GPU_UTIL"}


def test_the_role_fails_on_an_unknown_field(tmp_path: Path) -> None:
    """The role itself, on this machine (gpu_facts only reads; the check fails before anything is changed)."""
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "DCGM exporter with a typo", "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "modelfleet.serving.dcgm_exporter",
                   "dcgm_exporter_extra_collectors": ["DCGM_FI_DEV_GPU_UTILIZATION"]}]}]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()), "ANSIBLE_HOME": str(tmp_path / "home"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    argv = [playbook, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "play.yml")]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    expected = ("unknown DCGM field(s) in dcgm_exporter_collectors / dcgm_exporter_extra_collectors: "
                "DCGM_FI_DEV_GPU_UTILIZATION")
    assert expected in done.stdout, done.stdout[-3000:]
