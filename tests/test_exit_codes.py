"""The exit-code table end to end, against the local OpenAI-compatible stub (tests/http_stub.py):

0 complete · 1 checks failed · 2 bad input (tests/test_bad_inputs.py) · 3 replay misses ·
4 incomplete (a model stopped, nothing ran, api_error share over the limit, --strict skips).
Only complete runs become runs/SPEC/latest; compare/check refuse an incomplete run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.cli import main
from http_stub import OpenAIStub

TEMPLATE = "{% block system %}Answer positive or negative.{% endblock %}\n{% block user %}{{ text }}{% endblock %}\n"
ROWS = [("good fun", "positive"), ("dull", "negative"), ("good grief", "positive"), ("a mess", "negative")]


def write_spec(folder: Path, base_url: str, *, extra_models: str = "", extra: str = "", max_retries: int = 0) -> Path:
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS))
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": f"{t} {i}", "label": y}) + "\n"
                                                for i in range(5) for t, y in ROWS))
    (folder / "a.j2").write_text(TEMPLATE)
    (folder / "spec.yaml").write_text(
        "name: codes\ndataset: {source: '.', split: test, train_split: train}\n"
        "labels: [{name: negative}, {name: positive}]\n"
        "prompts:\n  - {name: a, template: a.j2, mode: text}\n"
        f"models:\n  - {{provider: openai, model: stub-model, base_url: '{base_url}', max_retries: {max_retries}, "
        f"params: {{temperature: 0, max_tokens: 4, seed: 0}}}}\n{extra_models}{extra}"
    )
    return folder / "spec.yaml"


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def metrics_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["run"]


def test_complete_run_exits_0_and_becomes_latest_then_checks_fail_with_1(here, capsys):
    with OpenAIStub() as stub:
        spec = write_spec(here, stub.base_url, extra="checks: [{metric: accuracy, min: 0.99}]\n")
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines"], capsys)
        assert code == 0, out
        latest = here / "runs" / "codes" / "latest"
        assert metrics_run(latest)["status"] == "complete"
        assert "**Status:** complete" in (latest / "report.md").read_text()
        # the stub answers "negative" for "a mess" and "dull", "positive" for "good ...": 100%
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines", "--check"], capsys)
        assert code == 0, out
    # a check nothing can pass: exit 1
    spec.write_text(spec.read_text().replace("min: 0.99", "max: 0.5"))
    code, out = run(["check", str(latest), "--spec", str(spec)], capsys)
    assert code == 1, out
    assert "complete" in (here / "summary.md").read_text()


def test_stopped_model_exits_4_keeps_latest_and_is_refused_by_compare_and_check(here, capsys):
    with OpenAIStub() as stub:
        spec = write_spec(here, stub.base_url)
        assert run(["eval", str(spec), "--quiet", "--no-baselines"], capsys)[0] == 0
    good = (here / "runs" / "codes" / "latest").resolve()
    with OpenAIStub(fail_status=404) as stub:
        spec = write_spec(here, stub.base_url)
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines"], capsys)
    assert code == 4, out
    assert "status: INCOMPLETE" in out and "stopped" in out
    runs = sorted(p for p in (here / "runs" / "codes").iterdir() if not p.is_symlink())
    bad = runs[-1]
    assert bad != good and (here / "runs" / "codes" / "latest").resolve() == good  # latest not moved
    run_part = metrics_run(bad)
    assert run_part["status"] == "incomplete" and any("stopped" in r for r in run_part["status_reasons"])
    assert "**Status:** incomplete" in (bad / "report.md").read_text()
    assert "exit 4" in (here / "summary.md").read_text()
    code, out = run(["compare", str(good), str(bad)], capsys)
    assert code == 2 and "incomplete" in out and "--allow-incomplete" in out
    assert run(["compare", str(good), str(bad), "--allow-incomplete"], capsys)[0] == 0
    code, out = run(["check", str(bad)], capsys)
    assert code == 2 and "incomplete" in out
    # one argument: the two newest *complete* runs; only one exists
    code, out = run(["compare", "runs/codes"], capsys)
    assert code == 2 and "two complete runs" in out


def test_error_share_over_the_limit_exits_4(here, capsys):
    with OpenAIStub(fail_status=500) as stub:
        spec = write_spec(here, stub.base_url)
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines", "--out", "r1"], capsys)
        assert code == 4, out
        reasons = metrics_run(here / "r1")["status_reasons"]
        assert any("4 of 4 requests (100%) ended in api_error" in r for r in reasons), reasons
        # the limit is a setting: allowing every request to fail makes the same run complete
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines", "--out", "r2", "--max-error-share", "1"], capsys)
        assert code == 0, out


def test_missing_key_is_a_warning_unless_strict(here, capsys):
    hosted = "  - {provider: openai, model: gpt-4o-mini}\n"  # api.openai.com: needs OPENAI_API_KEY
    with OpenAIStub() as stub:
        spec = write_spec(here, stub.base_url, extra_models=hosted)
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines", "--out", "r1"], capsys)
        assert code == 0, out
        assert "warning: openai:gpt-4o-mini skipped: OPENAI_API_KEY is not set" in out
        assert metrics_run(here / "r1")["status_warnings"]
        code, out = run(["eval", str(spec), "--quiet", "--no-baselines", "--out", "r2", "--strict"], capsys)
        assert code == 4, out
        assert metrics_run(here / "r2")["status"] == "incomplete"


def test_replay_misses_exit_3_before_any_baseline_work(here, capsys):
    baselines = "baselines:\n  - {kind: embedding_logreg}\n  - {kind: tfidf_logreg}\n"
    with OpenAIStub() as stub:
        spec = write_spec(here, stub.base_url, extra=baselines)
        cache = ["--cache-dir", str(here / "cache")]
        assert run(["eval", str(spec), "--quiet", "--no-baselines", *cache, "--out", "rec"], capsys)[0] == 0
        # an edited template: every request differs from what was recorded
        (here / "a.j2").write_text(TEMPLATE.replace("Answer", "Reply with"))
        t0 = time.perf_counter()
        code, out = run(["eval", str(spec), "--quiet", "--cache", "replay", *cache], capsys)
        elapsed = time.perf_counter() - t0
    assert code == 3, out
    assert "replay: 4 request(s) have no stored response" in out and "(of 4 planned)" in out
    assert "openai:stub-model / a: 4 missing: test:" in out
    assert elapsed < 10, elapsed
    assert "embedding" not in out  # no baseline ran
    assert not (here / "runs").exists()  # no run folder, latest untouched
    assert "replay misses (exit 3)" in (here / "summary.md").read_text()


def test_version_and_help_show_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("harness ")
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "4    incomplete" in text and "--max-error-share" in text


def test_baseline_flag_is_a_deprecated_alias_of_reference(tmp_path, capsys, monkeypatch):
    from harness.cli import build_parser

    args = build_parser().parse_args(["check", "runs/x", "--baseline", "runs/y"])
    assert args.reference == "runs/y"
    assert "--baseline RUN is deprecated; use --reference RUN" in capsys.readouterr().err
    assert build_parser().parse_args(["check", "runs/x", "--reference", "runs/z"]).reference == "runs/z"


def test_throttling_is_printed_and_reported_and_plain_progress_lines_reach_a_log(here):
    """stderr is a pipe here (as in CI): progress comes as plain lines, and 429s are visible."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("harness")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    with OpenAIStub(capacity=1, retry_after_s=0.05, latency_s=0.05) as stub:
        spec = write_spec(here, stub.base_url, max_retries=8)
        spec.write_text(spec.read_text().replace("max_retries: 8", "max_retries: 8, concurrency: 4"))
        result = subprocess.run([*command, "eval", str(spec), "--no-baselines", "--out", "r1", "--cache", "off"],
                                cwd=here, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "GITHUB_STEP_SUMMARY": str(here / "summary.md")})
        throttled = stub.throttled
    assert result.returncode == 0, result.stderr
    assert throttled > 0
    assert "openai:stub-model / a: 4/4 (100%)" in result.stderr  # the plain progress line, one per model x prompt
    assert "openai:stub-model was throttled:" in result.stdout
    assert "was throttled" in (here / "r1" / "report.md").read_text()


def test_small_truths_mcnemar_pricing_and_coverage_minimum():
    from harness.compare import mcnemar_exact, p_text
    from harness.coverage import coverage_curve
    from harness.metrics.kernel import encode
    from harness.pricing import price_for
    from harness.records import Prediction
    from harness.spec import Model

    assert p_text(float(f"{mcnemar_exact(150, 0):.6g}")) == "p = 1.4e-45"
    assert p_text(mcnemar_exact(3000, 0)) == "p < 1e-300"
    assert p_text(0.03125) == "p = 0.03125"
    assert price_for(Model(provider="openai", model="gpt-4o-mini")) is not None
    assert price_for(Model(provider="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:8080/v1")) is None
    # one confident right answer among 100 is not a "90% accuracy" threshold
    preds = [Prediction("t:0", "m", "p", "a", "a", "valid", confidence=0.99)] + [
        Prediction(f"t:{i}", "m", "p", "a", "b", "valid", confidence=0.5) for i in range(1, 100)]
    curve = coverage_curve(encode(preds, ["a", "b"], "single_label"))
    assert curve["at_target"] is None and curve["min_answered"] == 10


def test_sigterm_mid_run_writes_an_incomplete_run_and_exits_130(here):
    import os
    import signal
    import subprocess
    import sys

    script = Path(sys.executable).with_name("harness")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    rows = [(f"good film {i}", "positive") for i in range(40)]
    with OpenAIStub(latency_s=0.2) as stub:
        spec = write_spec(here, stub.base_url)
        (here / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
        spec.write_text(spec.read_text().replace("max_retries: 0", "max_retries: 0, concurrency: 1"))
        child = subprocess.Popen([*command, "eval", str(spec), "--no-baselines", "--quiet", "--cache", "off"],
                                 cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while stub.answered < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    run_dir = next(p for p in (here / "runs" / "codes").iterdir() if not p.is_symlink())
    run_part = metrics_run(run_dir)
    assert run_part["status"] == "incomplete" and any("interrupted" in r for r in run_part["status_reasons"])
    assert not (here / "runs" / "codes" / "latest").exists()
