"""The GPU path: decoding, exact scoring and a whole `tawin run` on CUDA agree with the CPU.

Marked ``cuda`` and skipped where torch sees no GPU (CI has none); run on a GPU machine with
``pytest -m cuda``. In fp32, CUDA's beam search must return the CPU's items and HF generate's
items; exact full-catalogue scores must match the CPU's; training in bf16 autocast (what
``precision: auto`` picks on a bf16 GPU) and under ``compile: true`` must give finite losses and
checkpoints that load back on the CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tawin.cli import main
from tawin.decoding.beam import constrained_beam_search
from tawin.decoding.scoring import score_all_items
from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender, load_recommender

from conftest import TINY_MODEL, TINY_OVERRIDES, hf_beam_search, spread_weights

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")
TINY = ModelConfig(**TINY_MODEL)
RUN_OVERRIDES = TINY_OVERRIDES + [
    "sft.epochs=1",
    "sft.first_train_rows=512",
    "sft.eval_rows=16",
    "sft.batch_size=32",
    "sft.warmup_steps=2",
    "rl.max_steps=3",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=8",
    "eval.sample_size=64",
    "eval.num_beams=20",
    "eval.batch_size=16",
    "device=cuda",
    "sft.log_every=4",
    "rl.log_every=1",
]


@pytest.fixture(scope="module")
def industrial_batch(industrial):
    """A tiny model with spread weights (distinct scores) and 16 left-padded test prompts."""
    recommender = build_recommender(TINY, industrial.items, seed=0)
    spread_weights(recommender.model)
    recommender.model.eval()
    test = industrial.split("test").take(np.arange(16))
    encoded = encode_split(test, industrial.items, recommender.codec, recommender.tokenizer, TINY.max_prompt_tokens)
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(16))
    return recommender, ids_BL, mask_BL


@pytest.fixture(autouse=True)
def exact_fp32_matmuls():
    """TF32 would change fp32 scores in the 3rd decimal; the comparisons below are fp32 against fp32."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("beams", [16, 50])
def test_beam_search_on_cuda_equals_cpu_and_hf_generate(industrial_batch, beams):
    recommender, ids_BL, mask_BL = industrial_batch
    trie = recommender.codec.trie
    on_cpu = constrained_beam_search(recommender.model.to("cpu"), trie.to("cpu"), ids_BL, mask_BL, beams)
    model = recommender.model.to(CUDA)
    on_cuda = constrained_beam_search(model, trie.to(CUDA), ids_BL.to(CUDA), mask_BL.to(CUDA), beams)
    assert on_cuda.items_BK.device.type == CUDA.type
    assert torch.equal(on_cuda.items_BK.cpu(), on_cpu.items_BK)
    torch.testing.assert_close(on_cuda.scores_BK.cpu(), on_cpu.scores_BK, atol=1e-4, rtol=0)
    hf_items_BK, hf_scores_BK = hf_beam_search(recommender, ids_BL.to(CUDA), mask_BL.to(CUDA), beams)
    assert torch.equal(on_cuda.items_BK, hf_items_BK.to(CUDA))
    torch.testing.assert_close(on_cuda.scores_BK, hf_scores_BK.float().to(CUDA), atol=1e-4, rtol=0)
    recommender.model.to("cpu")


def test_exact_scores_on_cuda_equal_cpu(industrial_batch):
    recommender, ids_BL, mask_BL = industrial_batch
    trie = recommender.codec.trie
    rows_BL, rows_mask_BL = ids_BL[:4], mask_BL[:4]
    on_cpu_BN = score_all_items(recommender.model.to("cpu"), trie.to("cpu"), rows_BL, rows_mask_BL)
    on_cuda_BN = score_all_items(recommender.model.to(CUDA), trie.to(CUDA), rows_BL.to(CUDA), rows_mask_BL.to(CUDA))
    recommender.model.to("cpu")
    assert on_cuda_BN.shape == (4, trie.n_items)
    torch.testing.assert_close(on_cuda_BN.cpu(), on_cpu_BN, atol=1e-3, rtol=1e-5)


def _run(out, *extra: str) -> dict:
    argv = ["run", "--out", str(out), "--no-progress"]
    for override in RUN_OVERRIDES + list(extra):
        argv += ["--set", override]
    assert main(argv) == 0
    return {method: json.loads((out / "eval" / method / "metrics.json").read_text()) for method in ("sft", "rl")}


def _assert_trained(out, industrial, metrics: dict) -> None:
    for method, values in metrics.items():
        assert values["n_rows"] == 64, method
        assert all(0.0 <= values[f"recall@{k}"] <= 1.0 for k in (1, 3, 5, 10, 20)), method
        assert values["recall@1"] <= values["recall@20"], method
    sft_log = [json.loads(line) for line in (out / "sft" / "log.jsonl").read_text().splitlines()]
    losses = [entry["train/loss"] for entry in sft_log if "train/loss" in entry]
    assert losses and all(np.isfinite(losses)), "SFT losses must be finite"
    rl_log = [json.loads(line) for line in (out / "rl" / "log.jsonl").read_text().splitlines()]
    rl_losses = [entry["train/loss"] for entry in rl_log if "train/loss" in entry]
    assert rl_losses and all(np.isfinite(rl_losses)), "RL losses must be finite"
    # A checkpoint trained on the GPU loads on the CPU (weights saved device-free).
    reloaded = load_recommender(out / "rl" / "final", industrial.items)
    assert reloaded.device.type == "cpu"


def test_run_on_cuda_in_bf16_autocast(tmp_path, industrial):
    assert torch.cuda.is_bf16_supported(), "precision=auto would fall back to fp32 on this GPU"
    out = tmp_path / "bf16"
    metrics = _run(out, "precision=auto")
    _assert_trained(out, industrial, metrics)
    saved = (out / "config.yaml").read_text()
    assert "device: cuda" in saved


def test_run_on_cuda_compiled(tmp_path, industrial):
    pytest.importorskip("triton")
    out = tmp_path / "compiled"
    metrics = _run(out, "precision=fp32", "compile=true")
    _assert_trained(out, industrial, metrics)
