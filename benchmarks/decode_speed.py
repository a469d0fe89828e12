"""Benchmark — tawin's constrained beam search vs Hugging Face ``generate``, same model and prompts.

Stage 5 (decoding). Acceptance (GitHub issue): ours ≥ 10× faster than HF ``generate`` at 16 and at
50 beams on the default model, with identical top items in fp32.

Command (defaults; must finish in < 10 min on 2 CPU cores)::

    python benchmarks/decode_speed.py            # --rows 256 --repeats 5 --threads 2
    python benchmarks/decode_speed.py --quick    # smoke test: 16 rows, 2 repeats, default model
    python benchmarks/decode_speed.py --device cuda --models default --hf-rows 16   # on a GPU

About 6–8 CPU-minutes of work. On a 2-core machine shared with other jobs, 2 threads per op can
wait on a descheduled thread at every op: the same run took 9.5 min at load ~4 and 17 min at load
~10, and ``--threads 1`` took 5 min with faster, steadier timings for both sides. Like the tawin
CLI, the script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (``_common``).

Both sides decode with the same random-weight Qwen2 model (the default ``ModelConfig()`` and a
larger one, hidden 512 × 8 layers, MLP 1024), in fp32 and in bf16 (the model cast to bfloat16),
at 16 and 50 beams, over the same catalogue trie:

* ours: :func:`tawin.decoding.beam.constrained_beam_search` (tree attention, one shared prompt
  cache per row);
* HF: ``model.generate(num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=…,
  length_penalty=0.0, do_sample=False, early_stopping=True, max_new_tokens=trie.max_depth)``
  where the prefix function is ``ItemTrie.allowed_tokens`` on the generated tokens. With
  ``length_penalty=0`` HF's sequence score is the summed log-probability, as ours.

Protocol. The prompt pool is ``--rows`` real Industrial test rows (a seeded random sample), split
into ``--repeats`` chunks. Each side batches a chunk's rows in order of prompt length, as tawin's
evaluation does (in row order ~42% of the prompt tokens would be left padding). Repeat r runs ours
on chunk r, then HF on the first rows of the same chunk — alternating in one process so that load
from other jobs on the machine hits both sides alike. For the default model in fp32, ours decodes
every chunk in full, i.e. all ``--rows`` prompts once over the repeats. HF generate re-encodes the
prompt once per beam and is far slower, so it decodes only ``--hf-rows`` rows of each chunk; the
larger model and bf16 (no bf16 matrix units on a typical CPU) cost more per row, so both sides
decode fewer rows there (see ``rows_per_run``). The JSON states the rows each side decoded per run.
Reported speed is the median over repeats of rows/s; ``speedup`` is the median of the per-repeat
ratios ours/HF (each ratio pairs two adjacent runs, so slow drifts in machine load cancel).
``speedup_cpu_time`` is the same ratio measured in CPU seconds of this process, less sensitive to
other jobs on a shared machine.

Identity check: on every row HF decoded, HF's K items (in order) must equal ours; we report the
fraction of such rows and the largest absolute score difference. Untrained models can have
near-ties, so the check is meaningful in fp32 (expect 1.0); bf16 values are printed for
information only. The JSON summary is printed last.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationConfig

from tawin.data.formats.canonical import load_dataset
from tawin.decoding.beam import constrained_beam_search
from tawin.items.trie import ItemTrie
from tawin.models.batching import EncodedSplit, encode_split, prompt_batch
from tawin.models.build import ModelConfig, RecommenderLM, build_recommender

from _common import (
    DATASET,
    benchmark_parser,
    common_problems,
    count_parameters,
    device_name,
    log,
    sample_split,
    setup,
    timed,
)

MODELS: dict[str, ModelConfig] = {
    "default": ModelConfig(),
    "large": ModelConfig(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8, intermediate_size=1024),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BF16_COST = 2
"""How much slower a bf16 forward is than fp32 on a CPU without bf16 matrix units (measured ~2×)."""
MIN_BEAM_TOKENS = 128
"""Ours decodes at least ceil(MIN_BEAM_TOKENS / beams) rows per run: with fewer beam tokens per step a
forward only streams the weights, and the comparison would measure memory bandwidth, not decoding."""


@dataclass(frozen=True)
class Case:
    model: str
    beams: int
    dtype: str
    ours_rows: int | None
    """Rows ours decodes per timed run: the first rows of the repeat's chunk; None = all of it."""
    hf_rows: int
    """Rows HF generate decodes per timed run: the chunk's first rows (ours decodes them too)."""


def rows_per_run(
    model: str, beams: int, dtype: str, chunk: int, hf_rows: int, params_ratio: float, bf16_cost: float = BF16_COST
) -> Case:
    """Rows per timed run: the whole chunk (ours) and `hf_rows` (HF at 16 beams) for the default fp32 model.

    Other cases cost more per row, so both sides decode fewer rows there: cost = (parameters /
    default model's) × (BF16_COST if bf16) × beams/16 (both sides feed K tokens per step, and HF
    re-encodes the prompt K times); rows = round(base / cost), at least 1 (HF) or
    ceil(MIN_BEAM_TOKENS / beams) (ours). Ours always covers the default fp32 model's whole chunk,
    the acceptance case.
    """
    model_cost = params_ratio * (bf16_cost if dtype == "bf16" else 1)
    cost = model_cost * beams / 16
    ours = None if model_cost <= 1 else min(chunk, max(math.ceil(MIN_BEAM_TOKENS / beams), round(chunk / cost)))
    hf = max(1, min(ours or chunk, round(hf_rows / max(1.0, cost))))
    return Case(model, beams, dtype, ours, hf)


def by_length(encoded: EncodedSplit, index: torch.Tensor) -> torch.Tensor:
    """A stable order of `index` by prompt length. Both sides batch rows in this order (as
    tawin's evaluation does) so neither encodes much left padding; results are put back."""
    return torch.from_numpy(np.argsort(encoded.prompt_len_R[index].numpy(), kind="stable"))


def unsort(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    restored = torch.empty_like(values)
    restored[order] = values
    return restored


def ours_decode(
    recommender: RecommenderLM, trie: ItemTrie, encoded: EncodedSplit, index: torch.Tensor, beams: int, batch: int
):
    """Our beam search over rows `index` in batches (`trie` on the model's device): (items [n, K],
    scores [n, K]) on the CPU."""
    items, scores, device = [], [], recommender.device
    order = by_length(encoded, index)
    for start in range(0, len(index), batch):
        ids_BL, mask_BL = prompt_batch(encoded, index[order][start : start + batch])
        result = constrained_beam_search(recommender.model, trie, ids_BL.to(device), mask_BL.to(device), beams)
        items.append(result.items_BK)
        scores.append(result.scores_BK)
    return unsort(torch.cat(items).cpu(), order), unsort(torch.cat(scores).cpu(), order)


def hf_decode(recommender: RecommenderLM, encoded: EncodedSplit, index: torch.Tensor, beams: int, batch: int):
    """HF beam search with the trie as prefix_allowed_tokens_fn: (token sequences [n, K, T], scores [n, K])."""
    trie, codec = recommender.codec.trie, recommender.codec
    config = GenerationConfig(
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=trie.max_depth,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=True,
        pad_token_id=codec.pad_id,
        eos_token_id=codec.eos_id,
        bos_token_id=recommender.tokenizer.bos_token_id,
        output_scores=True,
        return_dict_in_generate=True,
    )
    sequences, scores = [], []
    order = by_length(encoded, index)
    for start in range(0, len(index), batch):
        ids_BL, mask_BL = prompt_batch(encoded, index[order][start : start + batch])
        ids_BL, mask_BL, width = ids_BL.to(recommender.device), mask_BL.to(recommender.device), ids_BL.shape[1]

        def allowed(batch_id: int, input_ids: torch.Tensor, width: int = width) -> list[int]:
            return trie.allowed_tokens(input_ids[width:].tolist())

        with torch.no_grad():
            out = recommender.model.generate(
                input_ids=ids_BL, attention_mask=mask_BL, generation_config=config, prefix_allowed_tokens_fn=allowed
            )
        generated = out.sequences[:, width:].cpu()
        padded = torch.full((generated.shape[0], trie.max_depth), codec.pad_id, dtype=torch.long)
        padded[:, : generated.shape[1]] = generated
        sequences.append(padded.view(len(ids_BL), beams, -1))
        scores.append(out.sequences_scores.view(len(ids_BL), beams).float().cpu())
    return unsort(torch.cat(sequences), order), unsort(torch.cat(scores), order)


def items_of_sequences(trie: ItemTrie, sequences_NKT: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Item position of each generated sequence (tokens up to and including the first EOS)."""
    items = []
    for tokens in sequences_NKT.reshape(-1, sequences_NKT.shape[-1]).tolist():
        end = tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)
        items.append(int(trie.leaf_item_T[trie.walk(tokens[:end])]))
    return torch.tensor(items).view(sequences_NKT.shape[:2])


def run_case(
    case: Case, recommender: RecommenderLM, trie: ItemTrie, encoded: EncodedSplit, chunks: list[torch.Tensor], args
) -> dict:
    """Alternate ours/HF over the chunks (one pair per repeat): rows/s, speedup and the identity check."""
    ours_seconds, hf_seconds, ours_cpu, hf_cpu, same_rows, score_diff = [], [], [], [], [], 0.0
    for chunk in chunks:
        ours_index, hf_index = chunk[: case.ours_rows], chunk[: case.hf_rows]
        (ours_items, ours_scores), seconds, cpu = timed(
            lambda index=ours_index: ours_decode(recommender, trie, encoded, index, case.beams, args.batch),
            recommender.device,
        )
        ours_seconds.append(seconds)
        ours_cpu.append(cpu)
        (hf_sequences, hf_scores), seconds, cpu = timed(
            lambda index=hf_index: hf_decode(recommender, encoded, index, case.beams, args.hf_batch), recommender.device
        )
        hf_seconds.append(seconds)
        hf_cpu.append(cpu)
        hf_items = items_of_sequences(recommender.codec.trie, hf_sequences, recommender.codec.eos_id)
        same_rows += (hf_items == ours_items[: case.hf_rows]).all(dim=1).tolist()
        score_diff = max(score_diff, float((hf_scores - ours_scores[: case.hf_rows]).abs().max()))
        log(
            f"  {case.model} K={case.beams} {case.dtype}: ours {len(ours_index)} rows {ours_seconds[-1]:.2f}s, "
            f"HF {len(hf_index)} rows {hf_seconds[-1]:.2f}s"
        )
    ours_n = [len(c[: case.ours_rows]) for c in chunks]
    hf_n = [len(c[: case.hf_rows]) for c in chunks]
    ours_rate = [n / s for n, s in zip(ours_n, ours_seconds)]
    hf_rate = [n / s for n, s in zip(hf_n, hf_seconds)]
    cpu_ratio = [(no / o) / (nh / h) for no, o, nh, h in zip(ours_n, ours_cpu, hf_n, hf_cpu)]
    return {
        "model": case.model,
        "beams": case.beams,
        "dtype": case.dtype,
        "rows_per_s_ours": round(statistics.median(ours_rate), 3),
        "rows_per_s_hf": round(statistics.median(hf_rate), 4),
        "speedup": round(statistics.median(o / h for o, h in zip(ours_rate, hf_rate)), 2),
        "speedup_cpu_time": round(statistics.median(cpu_ratio), 2),
        "identical_fraction": round(sum(same_rows) / len(same_rows), 4),
        "max_abs_score_diff": float(f"{score_diff:.3g}"),
        "rows_ours_per_run": ours_n,
        "rows_hf_per_run": hf_n,
        "rows_checked": len(same_rows),
        "seconds_ours": [round(s, 3) for s in ours_seconds],
        "seconds_hf": [round(s, 3) for s in hf_seconds],
    }


def parse_args(argv: list[str] | None = None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rows", type=int, default=256, help="prompt pool: real Industrial test rows (default 256)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="alternating ours/HF runs per case; medians over them (default 5)"
    )
    parser.add_argument(
        "--hf-rows",
        type=int,
        default=6,
        help="rows HF decodes per run for the default fp32 model at 16 beams (default 6)",
    )
    parser.add_argument("--batch", type=int, default=64, help="rows per call of our beam search (default 64)")
    parser.add_argument("--hf-batch", type=int, default=4, help="rows per HF generate call (default 4)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="default: all (--quick: default only)")
    parser.add_argument("--beams", nargs="+", type=int, default=[16, 50])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: --rows 16 --repeats 2 --hf-rows 1, default model"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.hf_rows = 16, 2, 1
        args.models = args.models or ["default"]
    args.models = args.models or list(MODELS)
    problems = common_problems(args) + [
        f"--{name.replace('_', '-')}={getattr(args, name)} must be ≥ {low}"
        for name, low in (("rows", 1), ("repeats", 1), ("hf_rows", 1), ("batch", 1), ("hf_batch", 1))
        if getattr(args, name) < low
    ]
    if args.rows < args.repeats:
        problems.append(f"--rows={args.rows} must be ≥ --repeats={args.repeats} so every repeat has a chunk of rows")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = setup(args)  # fp32 means fp32 on both sides: TF32 matmuls would break the identity check's near-ties
    started = time.perf_counter()
    dataset = load_dataset(DATASET)
    rows = sample_split(dataset, "test", args.rows, args.seed)
    chunks = [torch.from_numpy(c) for c in np.array_split(np.arange(len(rows)), args.repeats)]
    results = []
    default_params = count_parameters(build_recommender(MODELS["default"], dataset.items).model)
    for name in args.models:
        recommender = build_recommender(MODELS[name], dataset.items, seed=args.seed)
        recommender.model.to(device).eval()
        trie = recommender.codec.trie.to(device)
        params_ratio = count_parameters(recommender.model) / default_params
        encoded = encode_split(
            rows, dataset.items, recommender.codec, recommender.tokenizer, MODELS[name].max_prompt_tokens
        )
        for dtype in args.dtypes:
            recommender.model.to(DTYPES[dtype])
            # First calls pay one-off set-up costs; 2 beams on one row keep this cheap.
            ours_decode(recommender, trie, encoded, chunks[0][:1], 2, args.batch)
            hf_decode(recommender, encoded, chunks[0][:1], 2, args.hf_batch)
            for beams in args.beams:
                case = rows_per_run(
                    name,
                    beams,
                    dtype,
                    min(len(c) for c in chunks),
                    args.hf_rows,
                    params_ratio,
                    bf16_cost=1 if device.type == "cuda" else BF16_COST,
                )
                results.append(run_case(case, recommender, trie, encoded, chunks, args))
    summary = {
        "benchmark": "constrained beam search (tawin) vs HF generate + prefix_allowed_tokens_fn",
        "dataset": DATASET,
        "prompt_rows": len(rows),
        "repeats": args.repeats,
        "threads": args.threads,
        "device": device_name(device),
        "torch": torch.__version__,
        "note": "rows_per_s = median over repeats; speedup = median of per-repeat ours/HF ratios; HF decodes "
        "rows_hf_per_run rows of each chunk, ours rows_ours_per_run; identity (HF top-K items equal ours, "
        "ordered) is expected in fp32 only",
        "seconds_total": round(time.perf_counter() - started, 1),
        "acceptance_10x_identical_fp32": {
            f"{r['model']}/{r['beams']}": r["speedup"] >= 10 and r["identical_fraction"] == 1.0
            for r in results
            if r["model"] == "default" and r["dtype"] == "fp32"
        },
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
