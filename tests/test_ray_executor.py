"""`harness eval --executor ray` (harness/ray_executor.py, harness/ray_worker.py).

The fast tests check the spec's `execution:` block, the vLLM-engine back end's configuration and
request translation (vLLM and a GPU do not exist here: the Ray config object is built and its
fields asserted), the reply reader, and the missing-Ray error (Ray hidden from a real subprocess).
The server test runs the HTTP back end for real: a local Ray instance, the real llama-server with
SmolLM2 behind a counting proxy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import HarnessError, SpecError
from harness.spec import Execution, Model, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: t
dataset: {source: x.jsonl}
labels: [{name: negative}, {name: positive}]
prompts: [{name: p, template: t.j2}]
"""


def _spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + text, "s.yaml")
    return str(info.value)


# -- the spec ------------------------------------------------------------------------------------


def test_execution_defaults_to_the_local_engine():
    spec = parse_spec(BASE, "s.yaml")
    assert spec.execution.engine == "local" and spec.execution.backend == "http"


def test_a_misspelt_execution_field_names_its_line_and_the_right_name():
    message = _spec_error("execution:\n  engine: ray\n  replica: 2\n")
    assert "s.yaml:7: execution.replica: unknown field; did you mean 'replicas'?" in message


def test_an_unknown_engine_or_backend_lists_the_allowed_values():
    assert "s.yaml:6: execution.engine" in _spec_error("execution:\n  engine: slurm\n")
    message = _spec_error("execution:\n  engine: ray\n  backend: sglang\n")
    assert "s.yaml:7: execution.backend" in message and "'http'" in message and "'vllm'" in message


@pytest.mark.parametrize("field, value, backend", [
    ("tensor_parallel_size", 2, "http"), ("gpus_per_replica", 1, "http"), ("qps", 5, "vllm"),
    ("base_urls", ["http://a:8000"], "vllm"),
])
def test_a_field_of_the_other_backend_is_an_error_at_its_line(field, value, backend):
    message = _spec_error(f"execution:\n  engine: ray\n  backend: {backend}\n  {field}: {json.dumps(value)}\n")
    assert f"s.yaml:8: execution.{field}: is for backend:" in message


def test_num_cpus_and_a_cluster_address_contradict():
    message = _spec_error("execution:\n  engine: ray\n  address: auto\n  num_cpus: 2\n")
    assert "execution.num_cpus" in message and "address" in message


# -- the vLLM engine back end (configuration only: no GPU, no vLLM here) --------------------------


def _vllm(options: dict | None = None, **params):
    from providers.vllm import VllmProvider

    model = Model(provider="vllm", model="HuggingFaceTB/SmolLM2-135M-Instruct",
                  options={"server_version": "0.11.0", **(options or {})},
                  params={"temperature": 0, "max_tokens": 8, "seed": 3, **params})
    return model, VllmProvider(model)


def test_the_gpu_node_spec_builds_the_vllm_processor_config():
    """specs/rotten_tomatoes_ray_vllm.yaml as shipped: the command its header gives runs this."""
    from harness.ray_executor import vllm_processor_config

    spec = load_spec(ROOT / "specs" / "rotten_tomatoes_ray_vllm.yaml")
    assert spec.execution.engine == "ray" and spec.execution.backend == "vllm"
    from providers.vllm import VllmProvider

    model = spec.models[0]
    config = vllm_processor_config(spec.execution, model, VllmProvider(model))
    assert type(config).__name__ == "vLLMEngineProcessorConfig"
    assert config.model_source == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config.concurrency == 2  # replicas
    assert config.batch_size == 64
    assert config.engine_kwargs["tensor_parallel_size"] == 1
    assert config.engine_kwargs["max_model_len"] == 2048
    assert config.should_continue_on_error is True
    assert config.placement_group_config is None  # one GPU per replica: Ray's default bundles


def test_vllm_config_carries_parallelism_lora_and_gpus_per_replica():
    from harness.ray_executor import vllm_processor_config

    model, provider = _vllm({"adapter": "sql", "lora_modules": {"sql": "/ckpt/sql-lora"}, "max_lora_rank": 16,
                             "dtype": "bfloat16"})
    execution = Execution(engine="ray", backend="vllm", replicas=4, batch_size=32, tensor_parallel_size=2,
                          gpus_per_replica=1, accelerator_type="A100", engine_kwargs={"enable_prefix_caching": True})
    config = vllm_processor_config(execution, model, provider)
    kw = config.engine_kwargs
    assert (config.concurrency, config.batch_size, config.accelerator_type) == (4, 32, "A100")
    assert kw["tensor_parallel_size"] == 2 and kw["pipeline_parallel_size"] == 1
    assert kw["enable_lora"] is True and kw["max_loras"] == 1 and kw["max_lora_rank"] == 16
    assert kw["dtype"] == "bfloat16" and kw["enable_prefix_caching"] is True and kw["seed"] == 0
    assert kw["task_type"] == "generate"  # Ray's own validator ran
    # two engine workers (TP 2) sharing one GPU: half a GPU each
    assert [b["GPU"] for b in config.placement_group_config["bundles"]] == [0.5, 0.5]


def test_engine_request_takes_sampling_params_and_the_answer_contract_from_the_body():
    from harness.ray_executor import engine_request, lora_of
    from providers import ChatRequest

    model, provider = _vllm({"constrain": "choice", "adapter": "sql", "lora_modules": {"sql": "/ckpt/sql-lora"}},
                            logprobs=True, top_logprobs=5, stop=["\n"])
    messages = [{"role": "user", "content": "Review: fine."}]
    text_body = provider.build_body(ChatRequest(messages=messages, params=model.params, choices=["negative", "positive"]))
    request = engine_request(text_body, lora=lora_of(provider))
    assert request["messages"] == messages
    assert request["sampling_params"] == {
        "temperature": 0.0, "top_p": 1.0, "seed": 3, "stop": ["\n"], "max_tokens": 8, "logprobs": 5,
        "structured_outputs": {"choice": ["negative", "positive"]},
    }
    assert request["lora"] == "/ckpt/sql-lora" and request["served_model"] == "sql"

    schema = {"type": "object", "properties": {"label": {"enum": ["negative", "positive"]}}, "required": ["label"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    json_body = provider.build_body(ChatRequest(messages=messages, params=model.params, response_format=fmt))
    assert engine_request(json_body)["sampling_params"]["structured_outputs"] == {"json": schema}


def test_a_likelihood_prefill_is_continued_by_the_chat_template_stage():
    from harness.ray_executor import engine_request
    from providers import ChatRequest

    model, provider = _vllm(logprobs=True, top_logprobs=20, max_tokens=1)
    messages = [{"role": "user", "content": "Review: fine."}, {"role": "assistant", "content": "very"}]
    body = provider.build_body(ChatRequest(messages=messages, params=model.params, continue_final=True, likelihood=True))
    assert body["continue_final_message"] is True
    request = engine_request(body)
    assert request["messages"][-1] == {"role": "assistant", "content": "very"}  # Ray continues it
    assert request["sampling_params"]["logprobs"] == 20 and request["sampling_params"]["max_tokens"] == 1
    assert "structured_outputs" not in request["sampling_params"]


def test_engine_request_refuses_body_fields_an_engine_cannot_honour():
    from harness.ray_executor import engine_request

    with pytest.raises(HarnessError, match="frequency_penalty"):
        engine_request({"model": "m", "messages": [], "frequency_penalty": 0.5})


def test_a_vllm_output_row_reads_back_as_the_local_path_reads_a_completion():
    """The postprocess runs on the row Ray's vLLM stage produces (its own vLLMOutputData model)."""
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMOutputData

    from harness.ray_executor import engine_request, read_reply
    from harness.ray_worker import vllm_postprocess

    request = engine_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                              "logprobs": True, "top_logprobs": 2})
    output = vLLMOutputData(prompt="<p>", prompt_token_ids=[1, 2, 3], num_input_tokens=3,
                            generated_tokens=[7, 9], generated_text="negative", num_generated_tokens=2,
                            logprobs=[{7: {"logprob": -0.1, "rank": 1, "decoded_token": "neg"},
                                       8: {"logprob": -2.5, "rank": 2, "decoded_token": "pos"}},
                                      {9: {"logprob": -0.01, "rank": 1, "decoded_token": "ative"}}])
    row = {"key": "k1", "request": json.dumps(request), **output.model_dump(), "time_taken_llm": 0.25}
    out = vllm_postprocess(row)
    response = read_reply(out["status"], out["text"], out["latency_s"])
    assert response.error is None
    assert response.text == "negative"
    assert response.finish_reason == "length"  # both allowed tokens used
    assert response.usage == {"prompt_tokens": 3, "completion_tokens": 2}
    assert response.logprobs[0]["token"] == "neg" and response.logprobs[0]["logprob"] == -0.1
    assert [t["token"] for t in response.logprobs[0]["top_logprobs"]] == ["neg", "pos"]
    assert response.latency_s == 0.25


# -- replies and errors -----------------------------------------------------------------------


def test_error_replies_are_never_answers():
    from harness.cache import unstorable
    from harness.ray_executor import read_reply

    refused = read_reply(0, "ClientConnectorError: refused", 0.01, url="http://h:1/v1", secret=None)
    assert refused.error_kind == "unreachable" and "http://h:1/v1" in refused.error
    limited = read_reply(429, '{"error": "slow down, key sk-abcdefghijklmnop"}', 0.1, secret="sk-abcdefghijklmnop")
    assert limited.error_kind == "rate_limit" and "sk-abcdefghijklmnop" not in limited.error
    assert read_reply(503, "busy", 0.1).error_kind == "server"
    assert read_reply(200, "<html>", 0.1).error_kind == "server"
    for response in (refused, limited):
        assert unstorable(response) is not None  # the cache refuses them: the local pass asks again


def test_the_raw_session_sends_the_wrapped_body_unchanged():
    """What Arrow would do to a body is avoided by wrapping it: the wrapper comes off at the POST."""
    from harness.ray_worker import BODY, RAW, RawSession, http_preprocess

    sent = []

    class Recorder:
        def post(self, url, headers=None, data=None):
            sent.append(data)
            raise ConnectionRefusedError("nobody listens")  # the request itself fails

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "é"}], "temperature": 0})
    payload = http_preprocess({"key": "k", "body": body})["payload"]

    async def go():
        session = RawSession()
        session._session = Recorder()
        reply = await session.post("http://h/v1/chat/completions", headers={}, data=json.dumps(payload))
        async with reply as r:
            return r.status, await r.json()

    status, got = asyncio.run(go())
    assert sent == [body.encode("utf-8")]
    assert status == 200 and got["status"] == 0 and "ConnectionRefusedError" in got[RAW]
    assert set(payload) == {BODY}


# -- without Ray ----------------------------------------------------------------------------------

BLOCKER = """
import sys
class _HideRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _HideRay())
"""


def test_executor_ray_without_ray_installed_says_what_to_install(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'ray'" in probe.stderr  # the blocker works
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "eval", str(ROOT / "specs" / "rotten_tomatoes.yaml"),
         "--executor", "ray", "--limit", "4", "--no-baselines", "--quiet", "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'harness[ray]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["off", "read", "write"])
def test_executor_ray_refuses_a_cache_it_cannot_hand_answers_through(tmp_path, mode):
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "eval", str(ROOT / "specs" / "rotten_tomatoes.yaml"),
         "--executor", "ray", "--limit", "4", "--no-baselines", "--quiet", "--cache", mode,
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert f"--cache {mode}" in result.stderr and "--cache rw" in result.stderr
    assert "Traceback" not in result.stderr


# -- for real: local Ray, llama-server, SmolLM2 ---------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent))
from llama_proxy import BARE_LABEL, CountingProxy, LlamaServer, server_test, write_spec  # noqa: E402

RAY_EXTRA = """\
execution:
  engine: ray
  num_cpus: 2
  replicas: 1
"""


def _figures(metrics: list[dict]) -> list[dict]:
    """The scored figures of every row, without timings (they are the run's, not the answers')."""
    drop = {"wall_s", "latency", "latency_s", "p50_latency_s", "p95_latency_s", "throughput", "timing"}

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in drop and "latency" not in k and "wall" not in k}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(metrics)


@pytest.mark.slow
@server_test
def test_ray_http_backend_answers_through_the_cache_like_a_local_run(tmp_path):
    import ray

    from harness.cache import ResponseCache
    from harness.ray_executor import RayExecutor
    from harness.runner import Prepared, plan_requests, run_eval

    limit = 6
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        path = write_spec(tmp_path / "spec", proxy.url, templates={"bare_label": BARE_LABEL}, concurrency=2,
                          max_tokens=4, extra=RAY_EXTRA)
        # a second prompt on the same template read as label likelihood shares its requests
        text = path.read_text().replace(
            "  - {name: bare_label, template: bare_label.j2, mode: text}",
            "  - {name: bare_label, template: bare_label.j2, mode: text}\n"
            "  - {name: likelihood, template: bare_label.j2, answer: label_likelihood, likelihood_max_tokens: null}",
        ).replace("params: {temperature: 0, max_tokens: 4, seed: 0}",
                  "params: {temperature: 0, max_tokens: 4, seed: 0, logprobs: true, top_logprobs: 20}")
        path.write_text(text)
        spec = load_spec(path)
        planned = {r["key"]: r["material"]["body"] for r in plan_requests(Prepared(spec, limit=limit), spec.models)}
        assert len(planned) == limit  # the likelihood prompt's requests are the bare_label ones

        def run(out: str, *, ray_executor: bool):
            cache = ResponseCache("rw", tmp_path / "cache")
            executor = RayExecutor(spec.execution) if ray_executor else None
            try:
                outcome = asyncio.run(run_eval(spec, out_dir=tmp_path / out, limit=limit, cache=cache, baselines=[],
                                               prefill=executor.prefill if executor else None))
            finally:
                cache.close()
            return outcome, executor

        first, executor = run("ray1", ray_executor=True)
        assert executor.record["ray_started"] is True and not ray.is_initialized()  # shut down after the pass
        assert first.complete, first.run["status_reasons"]
        # every planned request reached the server exactly once, as the exact body the harness built
        assert proxy.count() == len(planned)
        assert sorted(json.dumps(b, sort_keys=True) for b in proxy.bodies) == sorted(
            json.dumps(b, sort_keys=True) for b in planned.values())
        model = spec.models[0].id
        assert first.run["requests"][model]["sent"] == 0  # the local pass read everything from the cache
        assert first.run["execution"]["models"][model]["stored"] == len(planned)

        local, _ = run("local", ray_executor=False)
        assert proxy.count() == len(planned)  # nothing requested twice
        assert _figures(local.metrics) == _figures(first.metrics)

        again, executor = run("ray2", ray_executor=True)
        assert executor.record["ray_started"] is False and "ray_init_s" not in executor.record
        assert proxy.count() == len(planned)
        assert _figures(again.metrics) == _figures(first.metrics)


@pytest.mark.slow
@server_test
def test_a_killed_ray_run_resumes_from_the_cache_without_asking_twice(tmp_path):
    """SIGKILL the driver while Ray answers; the rerun sends only what was not stored before."""
    import signal
    import time

    from harness.cache import cache_stats
    from harness.keys import cache_key
    from harness.runner import Prepared, plan_requests

    limit, kill_after = 16, 3
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        path = write_spec(tmp_path / "spec", proxy.url, templates={"bare_label": BARE_LABEL}, concurrency=2,
                          max_tokens=4, extra=RAY_EXTRA)
        spec = load_spec(path)
        planned = plan_requests(Prepared(spec, limit=limit), spec.models)
        env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "harness.cli", "eval", str(path), "--limit", str(limit), "--quiet",
                   "--executor", "ray"]
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and first.poll() is None:
            if cache_stats(tmp_path / "cache")["entries"] >= kill_after:
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.2)
        first.wait(timeout=60)
        assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
        time.sleep(5)  # Ray's actors die with their driver; let any request still in flight arrive
        stored = cache_stats(tmp_path / "cache")["entries"]
        assert kill_after <= stored < limit
        sent_before = proxy.count()

        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert second.returncode == 0, second.stderr
        assert f"sending {limit - stored} of {limit} planned requests" in " ".join(second.stderr.split())
        rerun = proxy.bodies[sent_before:]
        assert len(rerun) == limit - stored  # only what the cache did not hold
        endpoint = planned[0]["material"]["endpoint"]
        keys_rerun = {cache_key({"provider": "llamacpp", "endpoint": endpoint, "body": b}) for b in rerun}
        keys_all = {r["key"] for r in planned}
        assert keys_rerun <= keys_all and len(keys_rerun) == len(rerun)
        assert {cache_key({"provider": "llamacpp", "endpoint": endpoint, "body": b})
                for b in proxy.bodies} == keys_all  # everything answered in the end
