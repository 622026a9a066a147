"""The Grafana dashboards in monitoring/dashboards against real components.

- the committed JSON is what ``generate.py`` makes, and each file is a dashboard the SDK's model reads back
  unchanged, with sound structure (ids, grid, data source references, template variables);
- every PromQL expression (panels, template variables, annotations) parses in a real Prometheus;
- every metric name they use exists in real exposition output: our model servers, our drift exporter,
  HAProxy 2.6's exporter, node_exporter (serving the textfile our rollout tooling renders), the recording rules in
  monitoring/rules, and dcgm-exporter's default counters (a committed copy: no GPU here);
- every expression returns series from a small real fleet scraped by that Prometheus (two credit-risk
  versions behind HAProxy as stable and canary, a regression model, the drift exporter with late labels,
  node_exporter with the rollout tooling's textfile), with the labels its legend uses. Only dcgm-exporter's
  panels cannot be run.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from drift_daemon import Daemon, train_module, value
from harness import Prometheus, free_port, need, wait_for
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families
from serverkit import Server, request

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "monitoring" / "dashboards"
GENERATOR = DASHBOARDS / "generate.py"
RULES = REPO / "monitoring" / "rules"
FIXTURES = Path(__file__).parent / "fixtures" / "dashboards"
EXPECTED_FILES = {"serving.json", "drift.json", "gpu.json", "rollout.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "state-timeline", "bargauge", "table", "heatmap"}
#: The rollout tooling's textfile metrics (written on every serving host, read by node_exporter) that the
#: dashboards and the alert rules rely on.
ROLLOUT_METRICS = {
    "modelfleet_rollout_role",
    "modelfleet_rollout_weight",
    "modelfleet_rollout_step",
    "modelfleet_rollout_decisions_total",
}
#: Recording rules the dashboards may use, should monitoring/rules not exist.
PLANNED_RECORDING_RULES = {
    f"model_version:{name}"
    for name in (
        "modelfleet_requests:rate1m",
        "modelfleet_errors:rate1m",
        "modelfleet_error_ratio:rate1m",
        *(f"modelfleet_request_duration_seconds:p{q}_{w}" for q in (50, 95, 99) for w in ("1m", "5m")),
    )
}
#: Grafana's own variables, with the values the tests give them.
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600", "__range_ms": "3600000"}
HOST_LABEL = "dash-host"
#: Values of the dashboards' variables: one real value each (parse test), "All" where allowed (fleet test).
SAMPLE = {
    "datasource": "prometheus",
    "model": "credit-risk",
    "version": "1",
    "host": HOST_LABEL,
    "window": "1m",
    "feature": "income",
    "gpu": "0",
}
ALL = ".*"
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]")


# --- the dashboards as data ----------------------------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels_of(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", []) if panel.get("type") == "row" else ()


@dataclass(frozen=True)
class Expr:
    """One PromQL expression of a dashboard and where it is."""

    where: str
    text: str
    legend: str = ""
    kind: str = "panel"  # panel, variable, annotation


def variable_selector(definition: str) -> str | None:
    """The PromQL inside a Prometheus variable query (``label_values(selector, label)``, ``query_result(expr)``)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", definition, re.DOTALL)
    if match:
        return match.group(1)
    if re.fullmatch(r"\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*", definition):
        return None
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", definition, re.DOTALL)
    if match:
        return match.group(1)
    raise AssertionError(f"unsupported variable query {definition!r}")


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query", "") if isinstance(query, dict) else query or "")


def expressions(dashboard: dict[str, Any]) -> list[Expr]:
    found: list[Expr] = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            found.append(
                Expr(
                    f"panel {panel['id']} {panel['title']!r} {target.get('refId')}",
                    target["expr"],
                    target.get("legendFormat", ""),
                )
            )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = variable_selector(variable_query(variable))
            if selector is not None:
                found.append(Expr(f"variable {variable['name']}", selector, kind="variable"))
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("expr"):
            found.append(Expr(f"annotation {annotation['name']!r}", annotation["expr"], kind="annotation"))
    return found


def variables_used(text: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in VARIABLE.finditer(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise AssertionError(f"no value for ${name} in {text!r}")
        return values[name]

    return VARIABLE.sub(replace, text)


# --- metric names in PromQL ----------------------------------------------------------------------------------

_NOT_METRICS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges and label lists
    that are not followed by ``(`` (functions, aggregations) and are not keywords or parts of numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", "{}", text)
    text = re.sub(r"\[[^\[\]]*\]", "[]", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the exponent or unit of a number (1e3), not a name
        if match.group().lower() in _NOT_METRICS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    assert metric_names(
        'sum by (model, version) (rate(a_total{model=~"$m", le="0.5"}[5m])) / on (model) '
        "group_left (role) max by (model, role) (b == 1)"
    ) == {"a_total", "b"}
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket{q="sum(y)"}[1m]))) > 1e3') == {"x_bucket"}
    assert metric_names("time() - max(ts_seconds offset 5m) or vector(0)") == {"ts_seconds"}
    assert metric_names("sum(x) without (instance) and ignoring (job) z unless w") == {"x", "z", "w"}
    assert metric_names("count(count by (host, UUID) (DCGM_FI_DEV_GPU_TEMP)) > bool 0") == {"DCGM_FI_DEV_GPU_TEMP"}
    assert metric_names("a:b:rate1m{x='y'} * on () group_right () c[5m:30s]") == {"a:b:rate1m", "c"}


# --- structure and generator ---------------------------------------------------------------------------------


def test_committed_json_is_the_generator_output() -> None:
    assert {p.name for p in DASHBOARDS.glob("*.json")} == EXPECTED_FILES
    checked = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, f"stale dashboards (run python {GENERATOR}):\n{checked.stdout}{checked.stderr}"


def test_generator_writes_and_detects_stale_files(tmp_path: Path) -> None:
    run = [sys.executable, str(GENERATOR), "--output-dir", str(tmp_path)]
    assert subprocess.run(run, capture_output=True, timeout=120).returncode == 0
    assert {p.name for p in tmp_path.glob("*.json")} == EXPECTED_FILES
    for name in EXPECTED_FILES:
        assert (tmp_path / name).read_bytes() == (DASHBOARDS / name).read_bytes()
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=120).returncode == 0
    (tmp_path / "gpu.json").write_text("{}\n")
    stale = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1 and "gpu.json" in stale.stderr and "+++" in stale.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_dashboard_reads_back_unchanged_through_the_sdk_model(name: str) -> None:
    """The SDK's typed model (grafana-foundation-sdk, Grafana 11.6 schema) knows every field of the file."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    data = json.loads((DASHBOARDS / name).read_text())
    assert json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder)) == data


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_dashboard_structure(name: str) -> None:
    dashboard = load_dashboards()[name]
    assert dashboard["uid"] == f"modelfleet-{Path(name).stem}" and len(dashboard["uid"]) <= 40
    assert "id" not in dashboard, "provisioned dashboards must not carry a database id"
    assert dashboard["title"].startswith("modelfleet / ") and "modelfleet" in dashboard["tags"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 39

    variables = dashboard["templating"]["list"]
    names = [v["name"] for v in variables]
    assert len(names) == len(set(names)), names
    assert variables[0] == variables[0] | {"name": "datasource", "type": "datasource", "query": "prometheus"}
    defined = set(names) | set(BUILTINS)
    for index, variable in enumerate(variables[1:], start=1):
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE, variable["name"]
        assert variable_query(variable).startswith("label_values("), variable["name"]
        used = variables_used(variable_query(variable))
        assert used <= set(names[:index]), f"{variable['name']} uses {used - set(names[:index])} before definition"

    panels = list(panels_of(dashboard))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], int] = {}
    referenced: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy"), panel["id"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["y"] >= 0, panel["id"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            assert grid["w"] == 24 and grid["h"] == 1 and panel["title"]
            continue
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"] and panel.get("description"), f"panel {panel['id']} needs a title and a description"
        assert panel["datasource"] == DATASOURCE, panel["id"]
        targets = panel["targets"]
        assert targets and len({t["refId"] for t in targets}) == len(targets), panel["id"]
        for target in targets:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), (panel["id"], target["refId"])
            referenced |= variables_used(target["expr"]) | variables_used(target.get("legendFormat", ""))
        referenced |= variables_used(panel["title"]) | variables_used(panel["description"])
    for annotation in dashboard["annotations"]["list"]:
        referenced |= variables_used(annotation.get("expr", ""))
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == DATASOURCE
    assert referenced <= defined, f"undefined variables: {referenced - defined}"
    unused = set(names) - referenced - {"datasource"}
    assert not unused, f"variables no panel uses: {unused}"


def test_uids_and_titles_are_unique() -> None:
    dashboards = load_dashboards().values()
    assert len({d["uid"] for d in dashboards}) == len({d["title"] for d in dashboards}) == len(EXPECTED_FILES)


# --- a real Prometheus -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus-bare"), {"global": {"scrape_interval": "1m"}})
    yield server
    server.stop()


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_every_expression_parses(name: str, bare_prometheus: Prometheus) -> None:
    """Parse errors come back as HTTP 400 bad_data; nothing else may either (e.g. many-to-many matching)."""
    problems = []
    for expr in expressions(load_dashboards()[name]):
        text = substitute(expr.text, SAMPLE)
        status, body = bare_prometheus.api("query", query=text)
        if status != 200 or body.get("status") != "success":
            problems.append(f"{expr.where}: {body.get('errorType')}: {body.get('error')}\n    {text}")
    assert not problems, "\n".join(problems)


# --- the names real exporters export -------------------------------------------------------------------------


def recording_rule_names() -> set[str]:
    files = [p for p in sorted(RULES.glob("*.yml")) if not re.search(r"(^test_|[_.]test\.yml$)", p.name)]
    if not files:
        return PLANNED_RECORDING_RULES
    return {
        rule["record"]
        for path in files
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def dcgm_default_counters() -> set[str]:
    names = set()
    for line in (FIXTURES / "dcgm-default-counters.csv").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            field, kind = (part.strip() for part in line.split(",")[:2])
            if kind != "label":  # label fields become labels of the other metrics
                names.add(field)
    return names


def exposition_names(text: str) -> set[str]:
    """Sample names in an exposition (histograms give _bucket, _sum, _count; counters their _total)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


# --- a small real fleet ----------------------------------------------------------------------------------------


def build_regression_artifact(workdir: Path, root: Path) -> Path:
    """``demand``: y = x·w + b on three numeric features, with a reference profile (regression quality)."""
    workdir.mkdir(parents=True, exist_ok=True)
    nodes = [
        helper.make_node(
            "Constant", [], ["w"], value=numpy_helper.from_array(np.array([1.5, -2, 0.5], np.float32), "w")
        ),
        helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.array(3, np.float32), "b")),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "demand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(workdir / "model.onnx")
    )
    np.savez(workdir / "reference.npz", x=np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    spec = {
        "name": "demand",
        "version": "1",
        "source": {"framework": "onnx", "path": "model.onnx"},
        "convert": {"opset": 17, "parity": {"samples": "reference.npz"}},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        "features": [{"name": n, "type": "numeric"} for n in ("a", "b", "c")],
        "task": {"type": "regression", "output": "y"},
        "reference": "reference.npz",
        "serving": {"providers": ["cpu"]},
    }
    (workdir / "model.yml").write_text(yaml.safe_dump(spec))
    return build_artifact(load_spec(workdir / "model.yml"), root).path


def infer_body(request_id: str, x: np.ndarray) -> dict[str, Any]:
    return {
        "id": request_id,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
    }


@dataclass
class Fleet:
    prometheus: Prometheus
    expositions: dict[str, set[str]]


def start_process(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def answers(url: str, process: subprocess.Popen[bytes], log: Path) -> Callable[[], bool]:
    def check() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}:\n{log.read_text()}")
        try:
            scrape(url)
            return True
        except OSError:
            return False

    return check


@pytest.fixture(scope="module")
def rollout_textfile() -> str:
    """What the rollout tooling writes for node_exporter's textfile collector on every serving host during a
    rollout of credit-risk: version 1 stable, version 2 canary at the first step, after some decisions."""
    from modelfleet.rollout.decision import Phase
    from modelfleet.rollout.exposition import render_metrics
    from modelfleet.rollout.plan import build_plan
    from modelfleet.rollout.state import RolloutState

    spec = load_spec(REPO / "examples" / "credit-risk" / "model.yml")
    assert spec.rollout is not None
    plan = build_plan(model="credit-risk", stable="1", canary="2", rollout=spec.rollout)
    now = time.time()
    gates = [
        {"name": "error_rate", "verdict": "pass", "value": 0.0, "threshold": 0.01},
        {"name": "latency_vs_stable", "verdict": "inconclusive", "value": None, "threshold": 1.5},
    ]
    state = RolloutState(
        plan=plan,
        phase=Phase.PROGRESSING,
        step=0,
        weight=plan.weight(0),
        started_at=now - 120,
        updated_at=now,
        inconclusive=1,
        last_decision_at=now,
        decisions={"advance": 1, "hold": 2},
        verdicts={"pass": 1, "inconclusive": 2},
        history=[{"gates": gates}],
    )
    return render_metrics(state)


@pytest.fixture(scope="module")
def fleet(
    credit_risk_artifact: Path, rollout_textfile: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    haproxy_bin = need("haproxy", "haproxy")
    node_exporter = need("prometheus-node-exporter", "prometheus-node-exporter")
    need("prometheus", "prometheus")
    work = tmp_path_factory.mktemp("dashboard-fleet")
    examples = credit_risk_artifact.parents[2] / "examples"
    train: ModuleType = train_module(examples)
    root, spool = work / "artifacts", work / "spool"
    spec = load_spec(examples / "credit-risk" / "model.yml")
    v1 = build_artifact(spec, root).path
    v2 = build_artifact(spec.model_copy(update={"version": "2"}), root).path
    demand = build_regression_artifact(work / "demand", root)
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, artifact in (("v1", v1), ("v2", v2), ("demand", demand)):
            server = Server(artifact, work, "--spool-dir", str(spool), "--spool-sample-rate", "1").start()
            stack.callback(server.stop)
            servers[name] = server

        router_port, router_metrics = free_port(), free_port()
        config = work / "haproxy.cfg"
        config.write_text(
            "global\n  log stdout format raw local0 err\n"
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n"
            f"frontend metrics\n  bind 127.0.0.1:{router_metrics}\n"
            "  http-request use-service prometheus-exporter if { path /metrics }\n"
            f"frontend models\n  bind 127.0.0.1:{router_port}\n  default_backend credit-risk\n"
            "backend credit-risk\n  balance roundrobin\n  option httpchk GET /v2/health/ready\n"
            f"  server blue 127.0.0.1:{servers['v1'].port} weight 90 check inter 1s\n"
            f"  server green 127.0.0.1:{servers['v2'].port} weight 10 check inter 1s\n"
        )
        assert subprocess.run([haproxy_bin, "-c", "-f", str(config)], capture_output=True, timeout=30).returncode == 0
        haproxy = start_process([haproxy_bin, "-db", "-f", str(config)], work / "haproxy.log")
        stack.callback(stop_process, haproxy)
        wait_for(
            answers(f"http://127.0.0.1:{router_metrics}/metrics", haproxy, work / "haproxy.log"),
            20,
            what="HAProxy's exporter",
        )

        textfiles = work / "textfile"
        textfiles.mkdir()
        (textfiles / "modelfleet_rollout_credit_risk.prom").write_text(rollout_textfile)
        node_port = free_port()
        node = start_process(
            [
                node_exporter,
                f"--web.listen-address=127.0.0.1:{node_port}",
                f"--collector.textfile.directory={textfiles}",
            ],
            work / "node.log",
        )
        stack.callback(stop_process, node)
        wait_for(answers(f"http://127.0.0.1:{node_port}/metrics", node, work / "node.log"), 20, what="node_exporter")

        # Traffic: credit-risk through the router (stable and canary), demand directly; one client mistake.
        truth: dict[str, float] = {}
        x, y = train.generate(300, seed=11)
        for i in range(300):
            response = request(router_port, "POST", "/v2/models/credit-risk/infer", infer_body(f"c{i}", x[i : i + 1]))
            assert response.status == 200, response
            truth[f"c{i}"] = int(y[i])
        xd = np.random.default_rng(1).normal(size=(100, 3)).astype(np.float32)
        for i in range(100):
            assert servers["demand"].infer("demand", infer_body(f"d{i}", xd[i : i + 1])).status == 200
            truth[f"d{i}"] = float(xd[i] @ np.array([1.5, -2, 0.5]) + 3 + 0.1)
        assert servers["v1"].infer("credit-risk", {"inputs": []}).status == 400

        drift = Daemon(spool, root, work / "drift-state")
        stack.callback(drift.close)
        drift.start()
        windows = [("credit-risk", "1"), ("credit-risk", "2"), ("demand", "1")]
        wait_for(
            lambda: all(
                value(drift.metrics(), "modelfleet_window_rows", model=m, version=v, window="10m") for m, v in windows
            ),
            30,
            what="the drift exporter to read every version's spool",
        )
        status, body, _ = drift.request(
            "POST",
            "/v1/feedback",
            json.dumps({"labels": [{"id": key, "label": label} for key, label in truth.items()]}).encode(),
        )
        assert status == 200, body
        wait_for(
            lambda: all(
                value(drift.metrics(), metric, model=m, version=v, window="10m") is not None
                for metric, m, v in (
                    ("modelfleet_model_accuracy", "credit-risk", "1"),
                    ("modelfleet_model_accuracy", "credit-risk", "2"),
                    ("modelfleet_model_mae", "demand", "1"),
                )
            ),
            30,
            what="quality metrics from the labels",
        )

        def trickle() -> None:  # keeps the 1m rates and recording rules alive while the tests query
            n = 0
            while not stop.wait(0.1):
                n += 1
                with contextlib.suppress(OSError):
                    request(router_port, "POST", "/v2/models/credit-risk/infer", infer_body(f"t{n}", x[n % 300 :][:1]))
                    servers["demand"].infer("demand", infer_body(f"u{n}", xd[n % 100 :][:1]))

        worker = threading.Thread(target=trickle, daemon=True)
        worker.start()
        stack.callback(worker.join, 10)
        stack.callback(stop.set)

        def target(job: str, port: int) -> dict[str, Any]:
            return {
                "job_name": job,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"host": HOST_LABEL}}],
            }

        rule_files = [str(p) for p in sorted(RULES.glob("*.yml")) if not re.search(r"(^test_|[_.]test\.yml$)", p.name)]
        prometheus = Prometheus(
            work / "prometheus",
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": rule_files,
                "scrape_configs": [
                    {
                        "job_name": "modelfleet-serve",
                        "static_configs": [
                            {
                                "targets": [f"127.0.0.1:{s.port}" for s in servers.values()],
                                "labels": {"host": HOST_LABEL},
                            }
                        ],
                    },
                    target("modelfleet-router", router_metrics),
                    target("modelfleet-drift", drift.port),
                    target("node", node_port),
                ],
            },
        )
        stack.callback(prometheus.stop)

        expositions = {
            "model server": set().union(*(exposition_names(s.metrics().text) for s in servers.values())),
            "drift exporter": exposition_names(drift.metrics_text()),
            "haproxy": exposition_names(scrape(f"http://127.0.0.1:{router_metrics}/metrics")),
            "node_exporter": exposition_names(scrape(f"http://127.0.0.1:{node_port}/metrics")),
            "recording rules": recording_rule_names(),
            "dcgm-exporter (default counters)": dcgm_default_counters(),
        }
        yield Fleet(prometheus, expositions)


def test_the_rollout_textfile_defines_the_rollout_metrics(fleet: Fleet) -> None:
    assert fleet.expositions["node_exporter"] >= ROLLOUT_METRICS
    assert {
        "model_version:modelfleet_error_ratio:rate1m",
        "model_version:modelfleet_requests:rate1m",
    } <= fleet.expositions["recording rules"]
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_XID_ERRORS"} <= fleet.expositions["dcgm-exporter (default counters)"]
    assert (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" not in fleet.expositions["dcgm-exporter (default counters)"]
    )  # off by default


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_every_metric_exists_in_real_exposition(name: str, fleet: Fleet) -> None:
    known = set().union(*fleet.expositions.values())
    missing: dict[str, list[str]] = {}
    for expr in expressions(load_dashboards()[name]):
        for metric in metric_names(substitute(expr.text, SAMPLE)) - known:
            missing.setdefault(metric, []).append(expr.where)
    assert not missing, "metrics no exporter exports:\n" + "\n".join(f"  {m}: {w}" for m, w in sorted(missing.items()))


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_every_expression_returns_series_from_the_fleet(name: str, fleet: Fleet) -> None:
    """Variables at "All" but the host and the window. A trailing ``> 0`` (show only what happens) is dropped so
    that the series must exist. dcgm-exporter's expressions cannot run here (no GPU)."""
    values = {key: ALL for key in SAMPLE} | {"window": "1m", "host": HOST_LABEL, "datasource": "prometheus"}
    dcgm = fleet.expositions["dcgm-exporter (default counters)"]
    pending = []
    for expr in expressions(load_dashboards()[name]):
        text = substitute(expr.text, values)
        if metric_names(text) & dcgm:
            continue
        pending.append((expr, re.sub(r"\s*>\s*0\s*$", "", text)))
    if name == "gpu.json":
        assert pending, "the GPU dashboard's host panels (node_exporter) run here"

    problems: list[str] = []

    def all_answer() -> bool:
        problems.clear()
        for expr, text in pending:
            status, body = fleet.prometheus.api("query", query=text)
            if status != 200 or body.get("status") != "success":
                problems.append(f"{expr.where}: {body.get('error')}\n    {text}")
                continue
            result = body["data"]["result"]
            if not result:
                problems.append(f"{expr.where}: no series\n    {text}")
            for legend_label in re.findall(r"\{\{\s*(\w+)\s*\}\}", expr.legend):
                lacking = [r["metric"] for r in result if not r["metric"].get(legend_label)]
                if lacking:
                    problems.append(f"{expr.where}: legend label {legend_label!r} missing in {lacking[:2]}")
        return not problems

    with contextlib.suppress(AssertionError):
        wait_for(all_answer, 45, interval=1.0, what="every expression to return series")
    assert not problems, "\n".join(problems)


def test_prometheus_scrapes_every_component(fleet: Fleet) -> None:
    jobs = {"modelfleet-serve", "modelfleet-router", "modelfleet-drift", "node"}

    def all_up() -> bool:
        up = fleet.prometheus.query("up")
        return len(up) == 6 and all(r["value"][1] == "1" for r in up) and {r["metric"]["job"] for r in up} == jobs

    wait_for(all_up, 30, interval=0.5, what=f"every target up: {fleet.prometheus.query('up')}")
