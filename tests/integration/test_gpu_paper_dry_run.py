"""benchmarks/gpu_paper.sh (issue #18) without a GPU: the dry run on the CPU, the budget stop, the plan, the paper
configs.

* `DRY_RUN=1 bash benchmarks/gpu_paper.sh OUT` runs the whole script (probe → plan → SFT → RL and
  evaluation of GRPO-beam / ReRe / TAWin σ*=2, the SFT-only evaluation, the report, the CPU decode
  benchmark) with the tiny built-in model, offline, and writes a well-formed report.md and
  results.json with the four methods' metrics, env.txt, run.log, logs.tar.gz and decode.json.
* A stage still running at its budget is stopped and recorded as such; a failing stage is recorded
  and the next one runs.
* The plan sizes SFT, RL and the evaluations to fill `margin` of each budget, never beyond the config.
* configs/paper/smollm2-{title,sid}-industrial.yaml hold the paper's settings.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
import time

import pytest

from tawin.config import load_config
from tawin.rl.config import RLConfig
from tawin.run.config import PipelineConfig

from conftest import REPO, TINY_OVERRIDES

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_paper  # noqa: E402
from gpu_paper_plan import Budgets, Caps, Rates, plan_sizes  # noqa: E402

METHODS = ["SFT only", "GRPO (beam negatives)", "ReRe", "TAWin (σ*=2)"]
N_ROWS = {"train": 36259, "valid": 4532, "test": 4533}
FILES = ["report.md", "results.json", "comparison.png", "logs.tar.gz", "env.txt", "run.log", "decode.json"]


def test_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "gpu-paper"
    env = {**os.environ, "DRY_RUN": "1", "WORK": str(tmp_path / "work"), "PY": sys.executable, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "benchmarks/gpu_paper.sh", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "time estimate per stage" in done.stdout and "estimates (s): SFT" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)

    results = json.loads((out / "results.json").read_text())
    assert results["dry_run"] is True and set(gpu_paper.DRY_RUN_OVERRIDES) <= set(results["overrides"])
    assert list(results["methods"]) == METHODS
    for label, metrics in results["methods"].items():
        assert metrics["n_rows"] == gpu_paper.DRY_RUN_CAPS["eval_rows"], label
        for k in (1, 3, 5, 10):
            assert 0 <= metrics[f"ndcg@{k}"] <= metrics[f"recall@{k}"] <= 1, (label, k)
    stages = {s["stage"]: s for s in results["stages"]}
    assert list(stages) == ["probe", "sft", "eval SFT only"] + [
        f"{kind} {m}" for m in METHODS[1:] for kind in ("rl", "eval")
    ]
    assert not any(s["stopped_at_budget"] or s["error"] for s in stages.values()), stages
    assert all(0 <= s["seconds"] <= s["budget_s"] for s in stages.values())
    plan = results["plan"]
    assert (
        plan["rl_steps"] == gpu_paper.DRY_RUN_CAPS["rl_steps"]
        and plan["eval_rows"] == gpu_paper.DRY_RUN_CAPS["eval_rows"]
    )
    assert plan["sft_max_train_rows"] == gpu_paper.DRY_RUN_CAPS["sft_rows"] and all(
        v > 0 for v in results["rates"].values()
    )
    cells = results["experiment"]["cells"]
    assert {c["config"]["rl"]["weighting"] for c in cells.values()} == {"none", "tawin"}
    assert (
        cells["seed_0/tawin-2"]["config"]["rl"]["anchor"] == 2
        and cells["seed_0/rere"]["config"]["rl"]["reward"] == "rank"
    )
    assert all(c["config"]["model"]["hidden_size"] == 32 for c in cells.values())
    assert (
        results["benchmarks"]["decode"]["results"]
        and "skipped in the dry run" in results["benchmarks"]["rl_step"]["missing"]
    )

    report = (out / "report.md").read_text()
    assert report.startswith("# The paper's regime on one GPU") and "**Dry run**" in report
    for section in (
        "## Stages",
        "## What the budgets cut",
        "## Recall@K and NDCG@K",
        "## Goal",
        "## Paired bootstrap",
        "## Speed benchmarks",
    ):
        assert section in report, section
    assert all(f"| {label} | 0." in report for label in METHODS)
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = set(archive.getnames())
    assert {
        "seed_0/sft/log.jsonl",
        *(f"seed_0/{c}/rl/log.jsonl" for c in ("grpo-beam-negatives", "rere", "tawin-2")),
    } <= names
    assert {f"seed_0/{c}/predictions.jsonl" for c in ("sft-only", "grpo-beam-negatives", "rere", "tawin-2")} <= names
    assert not any(name.endswith("tokenizer.json") or "/best/" in name for name in names)  # no checkpoints
    assert "nvidia-smi: not found (CPU dry run)" in (out / "env.txt").read_text()
    assert json.loads((out / "decode.json").read_text())["device"] == "cpu"
    print(f"dry run: {seconds:.1f} s")


def test_a_stage_is_stopped_at_its_budget_and_a_failure_is_recorded():
    lines: list[str] = []
    stages = gpu_paper.Stages(lines.append)
    started = time.perf_counter()
    stopped = stages.run("slow", 0.2, 1.0, lambda: time.sleep(10))
    assert stopped.stopped_at_budget and stopped.error is None and time.perf_counter() - started < 5
    failed = stages.run("broken", 5, None, lambda: 1 / 0)
    assert failed.error.startswith("ZeroDivisionError") and not failed.stopped_at_budget
    fine = stages.run("fine", 5, None, lambda: time.sleep(0.3))  # the alarm of the first stage is gone
    assert not fine.stopped_at_budget and fine.error is None and fine.seconds >= 0.3
    assert "STOPPED at its budget" in lines[1] and "FAILED (ZeroDivisionError" in lines[3]


def test_a_stopped_sft_run_hands_on_its_best_or_last_checkpoint(tmp_path):
    sft = tmp_path / "sft"
    assert gpu_paper.promote_last(sft) is None
    (sft / "last").mkdir(parents=True)
    for name in ("tawin.json", "model.safetensors", "trainer.pt"):
        (sft / "last" / name).write_text(f"last {name}")
    assert "last/" in gpu_paper.promote_last(sft)
    assert sorted(p.name for p in (sft / "best").iterdir()) == ["model.safetensors", "tawin.json"]
    assert json.loads((sft / "summary.json").read_text())["stopped_at_budget"] is True
    (sft / "best" / "tawin.json").write_text("best of epoch 1")  # a finished epoch's best/ is kept as it is
    assert "best/" in gpu_paper.promote_last(sft) and (sft / "best" / "tawin.json").read_text() == "best of epoch 1"


@pytest.fixture(scope="module")
def title_config():
    return load_config(PipelineConfig, REPO / "configs" / "paper" / "smollm2-title-industrial.yaml")


def test_the_plan_fills_each_budget_and_stays_within_the_config(title_config):
    budgets, margin = Budgets(probe=45, sft=100, eval=25, rl=35), 0.8
    slow = Rates(build_s=4, save_s=1, load_s=2, sft_step_s=0.5, eval_row_s=0.05, rl_step_s=1.0)
    plan = plan_sizes(slow, budgets, title_config, N_ROWS, margin)
    assert plan.sft_epochs == 1 and 0 < plan.sft_max_train_rows < N_ROWS["train"]
    assert plan.sft_max_train_rows == plan.sft_steps * title_config.sft.batch_size
    assert plan.estimate_s["sft"] <= margin * budgets.sft < plan.estimate_s["sft"] + slow.sft_step_s + 1e-9
    assert plan.estimate_s["rl"] <= margin * budgets.rl < plan.estimate_s["rl"] + slow.rl_step_s + 1e-9
    assert plan.estimate_s["eval"] <= margin * budgets.eval < plan.estimate_s["eval"] + slow.eval_row_s + 1e-9
    assert 0 < plan.eval_rows < N_ROWS["test"] and plan.rl_steps < title_config.rl.max_steps
    assert plan.sft_save_every == math.ceil(plan.sft_steps / 2) and plan.rl_eval_rows == title_config.eval.batch_size
    overrides = plan.overrides()
    assert f"rl.max_steps={plan.rl_steps}" in overrides and f"eval.sample_size={plan.eval_rows}" in overrides
    load_config(
        PipelineConfig, REPO / "configs" / "paper" / "smollm2-title-industrial.yaml", overrides
    )  # the sized config is valid

    fast = Rates(build_s=1, save_s=0.1, load_s=0.1, sft_step_s=0.001, eval_row_s=1e-5, rl_step_s=1e-4)
    plan = plan_sizes(fast, budgets, title_config, N_ROWS, margin)
    assert (plan.sft_epochs, plan.sft_max_train_rows, plan.eval_rows) == (
        title_config.sft.epochs,
        0,
        0,
    )  # all of it fits
    assert plan.rl_steps == title_config.rl.max_steps and plan.sft_eval_rows == title_config.sft.eval_rows
    capped = plan_sizes(fast, budgets, title_config, N_ROWS, margin, Caps(sft_rows=256, rl_steps=2, eval_rows=16))
    assert (capped.sft_max_train_rows, capped.rl_steps, capped.eval_rows) == (256, 2, 16)


def test_paper_smollm2_configs_hold_the_paper_settings(title_config):
    sid = load_config(PipelineConfig, REPO / "configs" / "paper" / "smollm2-sid-industrial.yaml")
    defaults = RLConfig()
    for config, item_repr in ((title_config, "title"), (sid, "sid")):
        model, sft, rl, evaluation = config.model, config.sft, config.rl, config.eval
        assert (model.name_or_path, model.item_repr, model.dtype, model.lora_r, config.precision) == (
            "smollm2",
            item_repr,
            "float32",
            0,
            "bf16",
        )
        assert (sft.batch_size, sft.epochs, sft.patience, sft.warmup_steps) == (128, 10, 3, 20)
        assert (rl.negatives, rl.reward, rl.weighting, rl.group_size, rl.kl_beta, rl.lr, rl.resolved_anchor) == (
            "beam",
            "binary",
            "tawin",
            16,
            1e-3,
            1e-5,
            2,
        )
        assert (rl.loss, rl.max_steps, rl.batch_size, rl.epochs, rl.warmup_ratio, rl.max_grad_norm) == (
            defaults.loss,
            defaults.max_steps,
            defaults.batch_size,
            defaults.epochs,
            defaults.warmup_ratio,
            defaults.max_grad_norm,
        )
        assert (evaluation.split, evaluation.num_beams, evaluation.sample_size) == ("test", 50, 0)
    assert title_config.sft.lr == 3e-4 and title_config.model.max_prompt_tokens == 512


def test_the_dry_run_uses_the_test_suites_tiny_model():
    assert set(TINY_OVERRIDES) <= set(gpu_paper.DRY_RUN_OVERRIDES)
    experiment = gpu_paper.load_grid(REPO / gpu_paper.DEFAULT_CONFIG, gpu_paper.DRY_RUN_OVERRIDES)
    assert [m.label for m in experiment.methods] == METHODS and experiment.seeds == (0,)
    assert experiment.base.model.name_or_path is None and experiment.base.device == "cpu"
