"""The Cloud Functions entry point under the real functions-framework (loopback HTTP): predictions equal the
model server's for the same rows (both examples), the same errors, EMF and record lines, a corrupted
artifact failing the cold start."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from functionkit import FunctionsFramework, example_artifacts, payload, rows
from serverkit import Server, tensor

from modelfleet.serverless.emf import parse_emf
from modelfleet.serverless.records import read_log_records

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def function_artifacts(trained_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return example_artifacts(trained_examples, tmp_path_factory)


@pytest.mark.parametrize("example", ["credit-risk", "mlp"])
def test_predictions_errors_and_log_lines(example: str, function_artifacts: dict[str, Path], tmp_path: Path,
                                          trained_examples: Path) -> None:
    function = FunctionsFramework(function_artifacts[example], tmp_path).start()
    server = Server(function_artifacts[example], tmp_path).start()
    try:
        x = rows(trained_examples, example, 40)
        ours = function.http("POST", f"/v2/models/{example}/infer", payload(x, "g1"))
        theirs = server.infer(example, payload(x, "g1"))
        assert ours.status == theirs.status == 200, function.output()
        for a, b in zip(ours.json()["outputs"], theirs.json()["outputs"], strict=True):
            assert (a["name"], a["datatype"], a["shape"]) == (b["name"], b["datatype"], b["shape"])
            np.testing.assert_allclose(np.asarray(a["data"]), np.asarray(b["data"]), rtol=1e-6, atol=1e-7)
        for path in (f"/v2/models/{example}", f"/v2/models/{example}/versions/1/ready", "/v2/health/ready"):
            assert function.http("GET", path).json() == server.get(path).json(), path
        width = x.shape[1]
        for body in ("{oops", {"inputs": [tensor("x", "FP32", [0.0] * (width - 1), [1, width - 1])]},
                     {"inputs": [tensor("x", "INT64", [0] * width, [1, width])]}):
            mine = function.http("POST", f"/v2/models/{example}/infer", body)
            server_answer = server.infer(example, body)
            assert (mine.status, mine.error()) == (server_answer.status, server_answer.error())
            assert mine.status == 400
        missing = function.http("GET", "/v2/models/nope")
        assert (missing.status, missing.error()) == (404, server.get("/v2/models/nope").error())
    finally:
        function.stop()
        server.stop()
    lines = function.output().splitlines()
    documents = [d for d in map(parse_emf, lines) if d is not None]
    assert [d["status"] for d in documents] == [200, 400, 400, 400], function.output()
    assert documents[0]["nv_inference_count"] == 40 and documents[1]["reason"] == "invalid_request"
    records = list(read_log_records(lines))
    assert [r.id for r in records] == ["g1"]
    np.testing.assert_array_equal(records[0].inputs["x"].astype(np.float32), x)  # float32 printed, read back


def test_a_corrupted_artifact_fails_the_cold_start(function_artifacts: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "mlp" / "1"
    shutil.copytree(function_artifacts["mlp"], broken)
    profile = broken / "profile.json"
    profile.write_bytes(profile.read_bytes()[:-10])  # a truncated copy
    function = FunctionsFramework(broken, tmp_path).launch()
    assert function.process is not None
    assert function.process.wait(60) != 0
    output = function.output()
    assert "cold start failed" in output and "profile.json: sha256" in output, output
