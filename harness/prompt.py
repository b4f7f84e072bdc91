"""Rendering a spec's Jinja templates into chat messages.

A template file is one block per role: `system`, `user`, and optionally `shot_user` / `shot_assistant`,
which are rendered once per few-shot example and inserted, in order, between the system and the user
message. Templates run in Jinja's immutable sandbox with StrictUndefined, so a typo in a variable name
is an error that names the template line instead of an empty string in a prompt.

Variables: `text`, `item` (the dataset row plus `text`), `labels` (list of {name, description}),
`label_names`, `examples` (the few-shot examples, each {text, label, answer, item}), `schema` (the
answer's JSON schema, pretty-printed), `mode` (json_schema | json_object | text), `task`, `level`
(`label`, or the hierarchy level a top_down prompt is asking: `labels` are then that level's
groups) and `parent` (the group chosen one level up, else None). Inside the shot blocks, `shot` is
the current few-shot example.
"""

from __future__ import annotations

import functools
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.records import Example
from harness.spec import Prompt, Spec

ROLE_BLOCKS = ("system", "user")
# A rendered block larger than this is a runaway loop (`range()` nested in `range()`), not a prompt.
MAX_BLOCK_CHARS = 1_000_000
SHOT_BLOCKS = ("shot_user", "shot_assistant")


@functools.lru_cache(maxsize=64)
def _environment(folder: Path):
    """One sandboxed environment per template folder: prompts that share a template file (the
    main spec's bare_label and both likelihood prompts, every level of a top-down prompt) compile
    it once; Jinja reloads a template whose file changed since."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(folder)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


# What a template sees that is the same for every example a renderer renders.
STATIC_VARIABLES = frozenset({"labels", "label_names", "schema", "mode", "task", "level", "parent"})


def static_blocks(source: str, env) -> set[str]:
    """The blocks of a template whose text is the same for every example: they read only
    STATIC_VARIABLES (and names they set themselves), call nothing, include or import nothing,
    and use no `random` filter, in a template that extends none. Anything else — the example's
    `text` or `item`, the shots, `loop`, a macro, `super()` — and the block is rendered per example."""
    from jinja2 import nodes

    try:
        tree = env.parse(source)
    except Exception:  # noqa: BLE001 - a template that fails here fails to compile with its own message
        return set()
    if any(True for _ in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))):
        return set()
    out = set()
    for block in tree.find_all(nodes.Block):
        if any(True for _ in block.find_all((nodes.Call, nodes.CallBlock, nodes.Macro, nodes.Block))):
            continue
        if any(f.name == "random" for f in block.find_all((nodes.Filter, nodes.Test))):
            continue
        names = list(block.find_all(nodes.Name))
        bound = {n.name for n in names if n.ctx in ("store", "param")}
        if {n.name for n in names if n.ctx == "load"} <= STATIC_VARIABLES | bound:
            out.add(block.name)
    return out


def _template_line(template) -> int | None:
    """The template line of the exception being handled. Blocks are called directly, so Jinja does
    not rewrite the traceback: map the compiled module's Python line back to the template line."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


class PromptRenderer:
    """Compiles one prompt's template once and renders it for any example."""

    def __init__(self, spec: Spec, prompt: Prompt, answer_schema: dict, gold_answer, *,
                 level: str = "label", parent: str | None = None):
        self.spec = spec
        self.prompt = prompt
        self.mode = spec.mode_of(prompt)
        self.path = spec.resolve_template(prompt)
        self._gold_answer = gold_answer  # gold -> the answer string a model should give
        self._schema_text = json.dumps(answer_schema, indent=2, ensure_ascii=False)
        self._labels = [
            {"name": label.name, "description": label.description or ""} for label in spec.labels
        ]
        self._label_names = spec.label_names
        # strategy: top_down asks one level at a time (harness.hierarchy): which level the labels
        # are, and the group chosen one level up (None at the top, and for flat prompts)
        self._level, self._parent = level, parent
        self.template = self._compile()

    def _compile(self):
        from jinja2 import TemplateNotFound, TemplateSyntaxError

        if not self.path.is_file():
            raise HarnessError(
                f"{self.spec.path or '<spec>'}: prompts[{self.prompt.name}].template: "
                f"{self.prompt.template!r} not found (looked for {self.path}); paths resolve "
                "against the spec's folder, then its parent"
            )
        from harness.files import read_text

        # read once, here (not UTF-8 / too big: a clear error); the checks below and the static-block
        # analysis read this text, not the file again
        self.source = read_text(self.path, "template", max_bytes=1_000_000)
        env = _environment(self.path.parent)
        try:
            template = env.get_template(self.path.name)
        except TemplateSyntaxError as exc:
            where = exc.filename or self.path
            raise HarnessError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
        except UnicodeDecodeError as exc:  # an included file that is not UTF-8
            raise HarnessError(f"{self.path}: a file it includes is not UTF-8 ({exc.reason}); save it as UTF-8") from None
        except TemplateNotFound:  # pragma: no cover - checked above
            raise HarnessError(f"{self.path}: template not found") from None
        if "user" not in template.blocks:
            raise HarnessError(
                f"{self.path}: a prompt template needs a `{{% block user %}}...{{% endblock %}}` "
                f"(blocks found: {', '.join(template.blocks) or 'none'}; allowed: "
                f"{', '.join(ROLE_BLOCKS + SHOT_BLOCKS)})"
            )
        unknown = set(template.blocks) - set(ROLE_BLOCKS + SHOT_BLOCKS)
        if unknown:
            raise HarnessError(
                f"{self.path}: unknown block(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(ROLE_BLOCKS + SHOT_BLOCKS)}"
            )
        if self.prompt.few_shot.k and not set(SHOT_BLOCKS) <= set(template.blocks):
            if "examples" not in self.source:
                raise HarnessError(
                    f"{self.path}: prompt {self.prompt.name!r} asks for few_shot.k="
                    f"{self.prompt.few_shot.k} but the template neither defines the blocks "
                    "shot_user and shot_assistant nor uses `examples`"
                )
        return template

    @cached_property
    def uses_shot_blocks(self) -> bool:
        return set(SHOT_BLOCKS) <= set(self.template.blocks)

    @cached_property
    def _static(self) -> dict[str, str | None]:
        """Blocks whose text cannot depend on the example (see `static_blocks`), rendered once:
        block name -> text, None until first rendered. The main spec's system blocks are static,
        and rendering one cost as much as the example's user block."""
        return dict.fromkeys(static_blocks(self.source, self.template.environment))

    def _shot(self, example: Example) -> dict[str, Any]:
        label = list(example.gold) if isinstance(example.gold, tuple) else example.gold
        return {
            "text": example.text,
            "label": label,
            "answer": self._gold_answer(example.gold, self.mode),
            "item": {**example.fields, "text": example.text},
        }

    def render(self, example: Example, shots: list[Example] = ()) -> list[dict[str, str]]:
        shot_vars = [self._shot(s) for s in shots]
        variables = {
            "text": example.text,
            "item": {**example.fields, "text": example.text},
            "labels": self._labels,
            "label_names": self._label_names,
            "examples": shot_vars,
            "schema": self._schema_text,
            "mode": self.mode,
            "task": self.spec.task,
            "level": self._level,
            "parent": self._parent,
        }
        try:
            messages = []
            system = self._block("system", variables)
            if system:
                messages.append({"role": "system", "content": system})
            if self.uses_shot_blocks:
                for shot in shot_vars:
                    shot_context = {**variables, "shot": shot}
                    messages.append({"role": "user", "content": self._block("shot_user", shot_context)})
                    messages.append(
                        {"role": "assistant", "content": self._block("shot_assistant", shot_context)}
                    )
            messages.append({"role": "user", "content": self._block("user", variables)})
        except HarnessError:
            raise
        except RecursionError:
            raise HarnessError(
                f"{self.path}: the template includes or calls itself without end (RecursionError while "
                f"rendering example {example.id}); remove the self-include"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any error a template raises is the template's
            # ZeroDivisionError, a bad format spec, the sandbox's range limit (OverflowError),
            # a SecurityError, an undefined variable: one line naming the template line.
            line = _template_line(self.template)
            where = f"{self.path}:{line}" if line else str(self.path)
            message = str(exc)
            message = message if len(message) <= 300 else message[:300] + "…"
            raise HarnessError(
                f"{where}: {type(exc).__name__}: {message} (while rendering example {example.id}; "
                "variables: text, item, labels, label_names, examples, schema, mode, task, level, parent, shot)"
            ) from None
        if not messages[-1]["content"].strip():
            raise HarnessError(
                f"{self.path}: the user block renders empty for example {example.id}; a prompt must "
                f"send the model something (check `{{% block user %}}` and the fields it uses)"
            )
        return messages

    def _block(self, name: str, variables: dict[str, Any]) -> str:
        if name not in self.template.blocks:
            return ""
        static = self._static
        if name in static:
            text = static[name]
            if text is None:
                text = static[name] = self._render_block(name, variables)
            return text
        return self._render_block(name, variables)

    def _render_block(self, name: str, variables: dict[str, Any]) -> str:
        context = self.template.new_context(variables)
        parts, size = [], 0
        for part in self.template.blocks[name](context):
            parts.append(part)
            size += len(part)
            if size > MAX_BLOCK_CHARS:
                raise HarnessError(
                    f"{self.path}: block {name} renders over {MAX_BLOCK_CHARS:,} characters; a loop "
                    f"runs away (e.g. a large or nested range())"
                )
        return "".join(parts).strip()
