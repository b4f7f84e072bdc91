"""Provider options are typed (a Pydantic `Options` model per provider class), checked once in
`Provider.__init__`, and a mistake gets the spec's own `file:line: field` error with a suggestion —
for every provider, llamacpp included (`thread: 4` used to be silently ignored)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec import Model, load_spec
from providers import get_provider_class, provider_names

SPEC = """\
name: opts
dataset:
  source: data.jsonl
  train_split: null
labels:
  - name: negative
  - name: positive
prompts:
  - name: p
    template: p.j2
models:
  - provider: openai
    model: gpt-4o-mini
  - provider: {provider}
    model: {model}
    options:
      {options}
"""


def write(tmp: Path, provider: str, model: str, options: str) -> Path:
    (tmp / "data.jsonl").write_text(json.dumps({"text": "a good film", "label": "positive"}) + "\n")
    (tmp / "p.j2").write_text("{% block user %}{{ text }}{% endblock %}")
    path = tmp / "spec.yaml"
    path.write_text(SPEC.format(provider=provider, model=model, options=options))
    return path


def construct(path: Path):
    spec = load_spec(path)
    model = spec.models[1]
    return get_provider_class(model.provider)(model)


@pytest.mark.parametrize("provider, model, options, line, message", [
    ("llamacpp", "smollm2", "thread: 4", 17,
     "models[1].options.thread: unknown option for provider 'llamacpp'; did you mean 'threads'?"),
    ("llamacpp", "smollm2", "threads: many", 17,
     "models[1].options.threads: Input should be a valid integer"),
    ("llamacpp", "smollm2", "batch: true", 17,
     "models[1].options.batch: provider 'llamacpp' has no Batch API mode"),
    ("openai", "gpt-4o", "batch_pol_s: 5", 17,
     "models[1].options.batch_pol_s: unknown option for provider 'openai'; did you mean 'batch_poll_s'?"),
    ("openai", "gpt-4o", "schema_constraints: maybe", 17,
     "models[1].options.schema_constraints: Input should be 'keep' or 'drop'"),
    ("groq", "llama-3.1-8b-instant", "retry_bas_s: 1", 17,
     "models[1].options.retry_bas_s: unknown option for provider 'groq'; did you mean 'retry_base_s'?"),
    ("vllm", "org/m", "tensor_parallel: 2", 17,
     "models[1].options.tensor_parallel: unknown option for provider 'vllm'; did you mean 'tensor_parallel_size'?"),
    ("transformers", "smollm2", "batchsize: 4", 17,
     "models[1].options.batchsize: unknown option for provider 'transformers'; did you mean 'batch_size'?"),
])
def test_option_mistakes_name_the_file_line_and_a_fix(tmp_path, provider, model, options, line, message):
    path = write(tmp_path, provider, model, options)
    with pytest.raises(SpecError) as info:
        construct(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: {message}"), text
    assert "\n" not in text  # one line per problem


def test_allowed_options_are_listed_and_good_ones_are_typed(tmp_path):
    with pytest.raises(SpecError, match=r"Allowed: .*ctx_size.*threads"):
        construct(write(tmp_path, "llamacpp", "smollm2", "thread: 4"))
    provider = construct(write(tmp_path, "llamacpp", "smollm2", "{threads: 3, ctx_size: 2048, extra_args: [--mlock]}"))
    assert provider.options.threads == 3
    command = provider.launch_command(8080)
    assert command[command.index("-t") + 1] == "3" and command[command.index("-c") + 1] == "2048"
    assert command[-1] == "--mlock"


def test_every_provider_declares_an_options_model():
    from providers.base import ProviderOptions

    for name in provider_names():
        cls = get_provider_class(name)
        assert issubclass(cls.Options, ProviderOptions) and cls.Options is not ProviderOptions, name
        assert cls.Options.model_config.get("extra") == "forbid", name


def test_a_model_from_the_command_line_is_named_instead_of_a_line():
    with pytest.raises(SpecError, match=r"^model llamacpp:smollm2: options.batch: provider 'llamacpp' has no Batch API"):
        get_provider_class("llamacpp")(Model(provider="llamacpp", model="smollm2", options={"batch": True}))


def test_harness_validate_reports_the_line_without_a_traceback(tmp_path):
    path = write(tmp_path, "llamacpp", "smollm2", "thread: 4")
    done = subprocess.run(["harness", "validate", str(path)], capture_output=True, text=True,
                          env={**os.environ}, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{path}:17: models[1].options.thread: unknown option for provider 'llamacpp'; did you mean 'threads'?" in done.stderr
