"""Benchmark — one RL step of tawin's loop vs TRL's ``GRPOTrainer`` doing the same work.

Stage 6 (RL). Acceptance (GitHub issue): ours ≥ 5× TRL's steps/s for one RL step — 32 prompts ×
G = 16 constrained-beam negatives, binary reward, same model and optimizer — median of ≥ 5 steps
after warm-up; < 10 min on 2 CPU cores; the JSON summary is printed last.

Command (defaults; needs the ``bench`` extra, ``pip install -e '.[bench]'``, i.e. trl==1.16.0)::

    python benchmarks/rl_step_speed.py                 # --steps 5 --warmup 1 --threads 2
    python benchmarks/rl_step_speed.py --quick         # smoke test: 8 prompts, 2 steps
    python benchmarks/rl_step_speed.py --profile       # also torch.profiler's top ops of one of our steps
    python benchmarks/rl_step_speed.py --device cuda   # both sides on the GPU (fp32, TF32 off)

The work of one step, identical on both sides:

* model: the default ``ModelConfig()`` (random-weight Qwen2, fp32, ``--device``), built once, saved with
  ``save_pretrained`` and loaded twice, so both sides start from the same weights (TRL builds its
  frozen reference from the saved folder, ours is a deep copy);
* prompts: the same ``--prompts`` (32) real Industrial train rows every step (a seeded sample),
  rendered by :func:`tawin.models.prompt.render_prompt`;
* rollout: ``constrained_beam_search`` with G = 16 beams per prompt → 16 distinct catalogue items;
* reward: binary, 1 when the beam's item is the row's target item; GRPO group advantages
  (r − mean)/(std + 1e-4); token-level clipped surrogate averaged per sequence then over
  sequences (``loss_type="grpo"``), ε = 0.2, k3 KL to the reference with β = 1e-3 (so both sides
  run the reference model); one update per rollout (old log-probs = new ones, detached);
* update: backward, clip the global gradient norm to 0.3, ``torch.optim.AdamW(lr=1e-4,
  weight_decay=0)`` — the same optimizer class and settings, passed to TRL through ``optimizers``.

Ours: the library's RL step, the calls :func:`tawin.rl.train.train_rl` makes for one step
(``_common.LibraryRLStep``): ``prompt_batch`` → :func:`tawin.rl.rollout.make_rollout` (``"beam"``,
G = 16) → :func:`tawin.rl.train.rl_step_loss` → :func:`tawin.train_utils.optimizer_step` (NaN
guard, backward, clip, AdamW, scheduler), with ``RLConfig(negatives="beam", reward="binary",
weighting="none", loss="grpo")``. TAWin weighting is off because TRL has no equivalent; it costs
a few tensor ops on [B, G].

TRL: ``GRPOTrainer`` (trl 1.16.0) with the official, experimental ``rollout_func`` hook (a
constructor argument; called as ``rollout_func(prompts, trainer)``, it must return a dict with
``prompt_ids``, ``completion_ids`` and ``logprobs``; other keys reach the reward functions). TRL's
``RepeatSampler`` hands it each prompt ``num_generations`` times in a row (512 entries for 32
prompts, although TRL's docstring says "no duplication"), so it beam-searches each distinct prompt once
with the trainer's current model and returns beam g for the g-th copy. ``logprobs`` is None (beam
search scores whole items, and TRL only reads sampling log-probs for vLLM importance sampling);
``item`` carries each completion's catalogue item to the reward function, next to the dataset's
``target`` column. Settings: ``per_device_train_batch_size=32`` with
``gradient_accumulation_steps = steps_per_generation = 16`` (so one generation of 32 × 16 = 512
completions feeds exactly one optimizer step), ``num_iterations=1``, ``num_generations=16``,
``beta=0.001``, ``gradient_checkpointing=False`` (GRPOConfig turns it on by default; it only trades
time for memory and ours does not use it), ``shuffle_dataset=False`` over a dataset of exactly the
32 rows (each step sees all of them), constant learning rate, no logging, saving or evaluation,
``report_to=[]``, ``use_cpu`` unless ``--device cuda``, ``bf16=False``. The micro-batch
(``--trl-micro-batch``) is TRL's fastest one measured here: CPU seconds of a TRL step at 16 / 32 /
64 / 128 / 512 completions per micro-batch were 14.6 / 12.1 / 12.6 / 13.3 / 15.6 (2 threads,
shared machine).

Protocol. Both run in one process and alternate step by step: a ``TrainerCallback`` runs one of
our steps at every TRL ``on_step_end``, so load from other jobs on the machine hits both sides
alike. A TRL step is timed from the end of the previous callback to its ``on_step_end`` (data
loading, rollout, reward, reference and policy passes, backward, clip, step, TRL bookkeeping); our
step is timed around the library step. On a GPU each clock read waits for the queued work first.
The first ``--warmup`` steps of each side are not timed. Reported: median seconds per step →
steps/s, ``ratio`` = ours/TRL steps/s, and the median of the per-step ratios (adjacent pairs, so
slow drifts in machine load cancel). ``same_first_rollout`` checks that both sides' first rollout
(identical weights) found the same 16 items for every prompt. The CPU seconds of each step
(``time.process_time``, all threads) are reported too: they depend less on how much of the
machine other jobs take.

Threads. ``torch.set_num_threads(--threads)``, and ``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it (``_common``). Without it, on the shared 2-core machine this was built on
(load ≈ 10), the benchmark measured 1.9× in 9.3 min instead of ≈ 6× in 5.7 min, for reasons
unrelated to either trainer.

Results (this machine, 2 threads, shared, defaults; see the JSON for the rest): ours ≈ 4.5–7 s
per step, TRL ≈ 25–47 s; ratio 5.1–6.5× over runs at TRL micro-batches 32–512 (5.1–5.7× at 32).
Our step is matmul-bound (``aten::mm`` + ``addmm`` ≈ 60–70 % of its CPU time): beam rollout ≈ 1 s,
policy + reference log-probs ≈ 2 s, backward ≈ 2 s, clip + AdamW ≈ 0.05 s.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

from _common import (DATASET, LibraryRLStep, benchmark_parser, common_problems, count_parameters, device_name, log,
                     sample_split, setup, synchronize, versions)

import torch
from transformers import AutoModelForCausalLM

from tawin.data.io import load_dataset
from tawin.decoding.beam import constrained_beam_search
from tawin.items.codec import ItemCodec
from tawin.models.batching import EncodedSplit, encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender
from tawin.models.prompt import encode_prompts, left_pad, render_prompt
from tawin.rl.config import RLConfig

GROUP = 16
"""G: beams (negatives) per prompt."""
RL = RLConfig(negatives="beam", reward="binary", weighting="none", loss="grpo", group_size=GROUP,
              kl_beta=1e-3, lr=1e-4, max_grad_norm=0.3, weight_decay=0.0, warmup_ratio=0.0)
"""Our side's settings; TRL's GRPOConfig below mirrors each of them."""
TRL_MICRO_BATCH = 32
"""TRL's per-device micro-batch (completions); the fastest of 16…512 for TRL here (module docstring)."""


@dataclass
class Timings:
    """Seconds per step of each side, in order (warm-up steps included), plus our phases."""

    ours: list[float] = field(default_factory=list)
    trl: list[float] = field(default_factory=list)
    ours_cpu: list[float] = field(default_factory=list)
    """CPU seconds of this process (all threads) per step: less sensitive to other jobs' load."""
    trl_cpu: list[float] = field(default_factory=list)
    ours_phases: list[dict[str, float]] = field(default_factory=list)
    trl_rollout: list[float] = field(default_factory=list)
    """Seconds TRL spent inside our rollout_func (the beam search) per step."""
    ours_first_items: torch.Tensor | None = None
    trl_first_items: torch.Tensor | None = None


class OurStep:
    """The library's RL step (:class:`_common.LibraryRLStep`) on the same fixed prompts every step."""

    def __init__(self, policy: torch.nn.Module, codec: ItemCodec, encoded: EncodedSplit, total_steps: int):
        self.library_step = LibraryRLStep(policy, codec, RL, total_steps)
        self.policy, self.encoded = policy, encoded
        self.index_B = torch.arange(len(encoded))

    def __call__(self) -> tuple[dict[str, float], torch.Tensor]:
        """Run one step; (seconds per phase, the rollout's items [B, G] on the CPU)."""
        generator = torch.Generator().manual_seed(1_000_003 + self.library_step.step)
        ids_BL, mask_BL = prompt_batch(self.encoded, self.index_B)
        phases, rollout = self.library_step(ids_BL, mask_BL, self.encoded.target_R[self.index_B], generator)
        return phases.as_dict(), rollout.items_BG.cpu()


def beam_rollout_func(codec: ItemCodec, tokenizer, max_prompt_tokens: int, timings: Timings):
    """TRL rollout_func: the G constrained beams of each distinct prompt, as completion token ids."""

    def rollout_func(prompts: list[str], trainer) -> dict:
        started = time.perf_counter()
        if len(prompts) % GROUP or any(prompts[i] != prompts[i - i % GROUP] for i in range(len(prompts))):
            raise RuntimeError(f"expected each prompt {GROUP} times in a row (TRL's RepeatSampler), got {len(prompts)} prompts")
        ids = encode_prompts(tokenizer, prompts[::GROUP], max_prompt_tokens)
        ids_BL, mask_BL = left_pad(ids, codec.pad_id)
        device = next(trainer.model.parameters()).device
        trie = codec.on(device)[0]
        items_BG = constrained_beam_search(trainer.model, trie, ids_BL.to(device), mask_BL.to(device), GROUP).items_BK.cpu()
        if timings.trl_first_items is None:
            timings.trl_first_items = items_BG.clone()
        tokens_nT = codec.target_table_NL[items_BG.reshape(-1)].tolist()
        lengths_n = codec.target_len_N[items_BG.reshape(-1)].tolist()
        timings.trl_rollout.append(time.perf_counter() - started)
        return {
            "prompt_ids": [row for row in ids for _ in range(GROUP)],
            "completion_ids": [tokens[:n] for tokens, n in zip(tokens_nT, lengths_n)],  # item tokens + EOS
            "logprobs": None,
            "item": items_BG.reshape(-1).tolist(),
        }

    return rollout_func


def hit_reward(completions: list, target: list[int], item: list[int], **_) -> list[float]:
    """Binary reward: 1.0 when the completion's catalogue item is the row's target item."""
    return [float(i == t) for i, t in zip(item, target)]


def build_trl(model_dir: str, output_dir: str, texts: list[str], targets: list[int], tokenizer, codec: ItemCodec,
              max_prompt_tokens: int, total_steps: int, micro_batch: int, timings: Timings, device: torch.device):
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=len(texts) * GROUP // micro_batch,
        steps_per_generation=len(texts) * GROUP // micro_batch,
        num_iterations=1,
        num_generations=GROUP,
        max_completion_length=int(codec.target_len_N.max()),
        beta=RL.kl_beta,
        loss_type="grpo",
        scale_rewards="group",
        epsilon=RL.clip_eps_low,
        learning_rate=RL.lr,
        weight_decay=RL.weight_decay,
        max_grad_norm=RL.max_grad_norm,
        lr_scheduler_type="constant",
        max_steps=total_steps,
        shuffle_dataset=False,
        gradient_checkpointing=False,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        log_completions=False,
        disable_tqdm=True,
        use_cpu=device.type == "cpu",
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        seed=0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=RL.lr, weight_decay=RL.weight_decay)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=hit_reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": texts, "target": targets}),
        processing_class=tokenizer,
        optimizers=(optimizer, None),
        rollout_func=beam_rollout_func(codec, tokenizer, max_prompt_tokens, timings),
    )
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    return trainer


def make_alternator(ours: OurStep, timings: Timings, profile: bool, device: torch.device):
    """A TrainerCallback that times each TRL step and then runs (and times) one of our steps."""
    from transformers import TrainerCallback

    class Alternate(TrainerCallback):
        def __init__(self):
            self.restart()
            self.profile_table: list[dict] | None = None

        def restart(self):
            synchronize(device)
            self.trl_started, self.trl_cpu_started = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            timings.trl.append(time.perf_counter() - self.trl_started)
            timings.trl_cpu.append(time.process_time() - self.trl_cpu_started)
            cpu = time.process_time()
            phases, items_BG = ours()
            timings.ours_cpu.append(time.process_time() - cpu)
            timings.ours.append(sum(phases.values()))
            timings.ours_phases.append(phases)
            if timings.ours_first_items is None:
                timings.ours_first_items = items_BG.clone()
            log(f"  step {state.global_step}: TRL {timings.trl[-1]:.2f}s  ours {timings.ours[-1]:.2f}s")
            if profile and state.global_step == state.max_steps:
                self.profile_table = profile_ours(ours)
            self.restart()

    return Alternate()


def profile_ours(ours: OurStep, top: int = 15) -> list[dict]:
    """torch.profiler over one more of our steps: the top ops by self CPU time (also printed to stderr)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ours()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=top), file=sys.stderr, flush=True)
    total = sum(e.self_cpu_time_total for e in averages)
    rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1), "share": round(e.self_cpu_time_total / total, 3),
             "calls": e.count} for e in rows]


def parse_args(argv: list[str] | None = None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--prompts", type=int, default=32, help="prompts per step: real Industrial train rows (default 32)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side after warm-up; medians over them (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first (default 1)")
    parser.add_argument("--trl-micro-batch", type=int, default=TRL_MICRO_BATCH,
                        help=f"TRL's per_device_train_batch_size; gradient accumulation makes up the prompts × {GROUP} "
                             f"completions of one optimizer step (default {TRL_MICRO_BATCH}, TRL's fastest measured)")
    parser.add_argument("--profile", action="store_true", help="profile one extra step of ours with torch.profiler")
    parser.add_argument("--quick", action="store_true", help="smoke test: --prompts 8 --steps 2 --warmup 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.steps, args.warmup = 8, 2, 1
    problems = common_problems(args) + [f"--{name}={getattr(args, name)} must be ≥ {low}"
                                        for name, low in (("prompts", 1), ("steps", 1), ("warmup", 0)) if getattr(args, name) < low]
    completions = args.prompts * GROUP
    args.trl_micro_batch = min(args.trl_micro_batch, completions)
    if args.trl_micro_batch < 1 or completions % args.trl_micro_batch:
        problems.append(f"--trl-micro-batch={args.trl_micro_batch} must divide the {completions} completions of a step "
                        f"(--prompts {args.prompts} × G={GROUP}) so one optimizer step covers them all")
    if problems:
        parser.error("; ".join(problems))
    return args


def summarize(args, timings: Timings, parameters: int, seconds: float, device: torch.device) -> dict:
    """The JSON summary: medians over the timed steps (warm-up dropped), ratios, settings, versions."""
    ours_s, trl_s = timings.ours[args.warmup:], timings.trl[args.warmup:]
    phases = {name: round(statistics.median(p[name] for p in timings.ours_phases[args.warmup:]), 4) for name in timings.ours_phases[0]}
    ours_rate, trl_rate = 1 / statistics.median(ours_s), 1 / statistics.median(trl_s)
    accumulation = args.prompts * GROUP // args.trl_micro_batch
    return {
        "benchmark": "one RL step: tawin loop vs TRL GRPOTrainer(rollout_func = our constrained beams)",
        "dataset": DATASET,
        "model": {"config": "ModelConfig() default Qwen2", "parameters": parameters,
                  "dtype": "float32", "device": device_name(device)},
        "prompts_per_step": args.prompts,
        "group_size": GROUP,
        "completions_per_step": args.prompts * GROUP,
        "kl_beta": RL.kl_beta,
        "lr": RL.lr,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "seconds_per_step_ours": [round(s, 3) for s in ours_s],
        "seconds_per_step_trl": [round(s, 3) for s in trl_s],
        "median_s_ours": round(statistics.median(ours_s), 4),
        "median_s_trl": round(statistics.median(trl_s), 4),
        "steps_per_s_ours": round(ours_rate, 4),
        "steps_per_s_trl": round(trl_rate, 4),
        "ratio": round(ours_rate / trl_rate, 2),
        "ratio_paired_median": round(statistics.median(t / o for o, t in zip(ours_s, trl_s)), 2),
        "median_cpu_s_ours": round(statistics.median(timings.ours_cpu[args.warmup:]), 4),
        "median_cpu_s_trl": round(statistics.median(timings.trl_cpu[args.warmup:]), 4),
        "ratio_cpu_time": round(statistics.median(timings.trl_cpu[args.warmup:]) / statistics.median(timings.ours_cpu[args.warmup:]), 2),
        "median_phase_s_ours": phases,
        "median_rollout_func_s_trl": round(statistics.median(timings.trl_rollout[args.warmup:]), 4),
        "rollout_func_calls": len(timings.trl_rollout),
        "same_first_rollout": bool(torch.equal(timings.ours_first_items, timings.trl_first_items)),
        "trl_settings": {"per_device_train_batch_size": args.trl_micro_batch, "gradient_accumulation_steps": accumulation,
                         "steps_per_generation": accumulation, "num_iterations": 1, "num_generations": GROUP,
                         "beta": RL.kl_beta, "loss_type": "grpo", "gradient_checkpointing": False, "rollout_func": True},
        "versions": versions("torch", "transformers", "trl", "accelerate", "datasets"),
        "seconds_total": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError as error:
        sys.exit(f"{error}: this benchmark needs the bench extra (trl==1.16.0): pip install -e '.[bench]'")
    device = setup(args)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func's "experimental" warning, stated above
    started = time.perf_counter()
    dataset = load_dataset(DATASET)
    rows = sample_split(dataset, "train", args.prompts, args.seed)
    model_config = ModelConfig()
    recommender = build_recommender(model_config, dataset.items, seed=args.seed)
    codec, tokenizer = recommender.codec, recommender.tokenizer
    encoded = encode_split(rows, dataset.items, codec, tokenizer, model_config.max_prompt_tokens)
    texts = [render_prompt(encoded.history_RH[r, : rows.history_len[r]].tolist(), codec.prompt_text) for r in range(len(rows))]
    total_steps = args.warmup + args.steps
    timings = Timings()
    with tempfile.TemporaryDirectory() as model_dir, tempfile.TemporaryDirectory() as output_dir:
        recommender.model.save_pretrained(model_dir)
        ours = OurStep(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device), codec, encoded, total_steps)
        trainer = build_trl(model_dir, output_dir, texts, encoded.target_R.tolist(), tokenizer, codec,
                            model_config.max_prompt_tokens, total_steps, args.trl_micro_batch, timings, device)
        alternate = make_alternator(ours, timings, args.profile, device)
        trainer.add_callback(alternate)
        alternate.restart()
        trainer.train()

    summary = summarize(args, timings, count_parameters(ours.policy), time.perf_counter() - started, device)
    if alternate.profile_table is not None:
        summary["profile_ours_top_ops"] = alternate.profile_table
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
