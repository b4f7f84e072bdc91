"""The report section on baselines: how each was trained and where its time went."""

from __future__ import annotations

from typing import Any


def baselines_markdown(baselines: dict[str, dict[str, Any]]) -> list[str]:
    rows = [(bid, b) for bid, b in baselines.items() if not b.get("skipped")]
    if not rows:
        return []
    lines = [
        "## Baselines", "",
        "Wall time = fit (training, thresholds; embedding the train texts included) + predict "
        "(embedding the evaluated texts included). Embeddings come from the on-disk cache when they can.", "",
        "| baseline | kind | train rows | fit | predict | embedding step | texts cached / encoded | model |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for bid, b in rows:
        embedding = b.get("embedding") or {}
        model = b.get("embedding_model") or b.get("model") or "–"
        lines.append(
            f"| {bid} | {b.get('kind', '–')} | {b.get('train_rows', '–')} | {_s(b.get('fit_s'))} | "
            f"{_s(b.get('predict_s'))} | {_s(embedding.get('total_s'))} | "
            + (f"{embedding.get('hits', 0)} / {embedding.get('misses', 0)}" if embedding else "–")
            + f" | {model} |"
        )
    lines.append("")
    for bid, b in rows:
        if b.get("thresholds"):
            source = b.get("thresholds_from")
            where = "default threshold" if source == "default" else f"tuned on split `{source}`"
            shown = ", ".join(f"{k} {v:.2f}" for k, v in b["thresholds"].items())
            lines += [f"- `{bid}` label thresholds ({where}): {shown}"]
        if b.get("labels_never_predicted"):
            lines += [f"- `{bid}`: no model label maps to {', '.join(b['labels_never_predicted'])}"]
    if lines[-1] != "":
        lines.append("")
    return lines


def _s(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}s"
