"""Model providers, registered lazily so an SDK is imported only when a spec uses it."""

from __future__ import annotations

import importlib

from harness.errors import HarnessError
from providers.base import ChatRequest, ChatResponse, LaunchedServer, Provider, ProviderOptions

# provider name -> "module:Class"; imported on first use.
_REGISTRY: dict[str, str] = {
    "openai": "providers.openai:OpenAIProvider",
    "llamacpp": "providers.llamacpp:LlamaCppProvider",
    "vllm": "providers.vllm:VllmProvider",
    "transformers": "providers.transformers:TransformersProvider",
    "groq": "providers.groq:GroqProvider",
}


def register(name: str, target: str) -> None:
    """Register a provider class by import path (`module:Class`)."""
    _REGISTRY[name] = target


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def get_provider_class(name: str) -> type[Provider]:
    target = _REGISTRY.get(name)
    if target is None:
        raise HarnessError(
            f"unknown provider {name!r}; known providers: {', '.join(provider_names())}"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = [
    "ChatRequest", "ChatResponse", "LaunchedServer", "Provider", "ProviderOptions", "get_provider_class",
    "provider_names", "register",
]
