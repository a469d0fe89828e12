"""Benchmark — one RL step three ways: tawin's own step, TRL's ``GRPOTrainer`` with tawin's beam
rollout (``tawin.integrations.trl``), and TRL's ``GRPOTrainer`` with its own Hugging Face generation.

Stage 6 (RL). 32 prompts × G = 16, binary reward, same model and optimizer on every side; median
of ≥ 5 steps after warm-up. The JSON summary is printed last, the three-column table (seconds per
step of each side) just before it on stderr.

Command (defaults; needs the ``trl`` extra, ``pip install -e '.[trl]'``, i.e. trl==1.16.0)::

    python benchmarks/rl_step_speed.py                 # --steps 5 --warmup 1 --threads 2
    python benchmarks/rl_step_speed.py --quick         # smoke test: 8 prompts, 2 steps
    python benchmarks/rl_step_speed.py --no-hf-generate  # two columns: ours and TRL + tawin rollout
    python benchmarks/rl_step_speed.py --profile       # also torch.profiler's top ops of one of our steps
    python benchmarks/rl_step_speed.py --device cuda   # every side on the GPU (fp32, TF32 off)

The work of one step, identical on every side but the third's rollout:

* model: the default ``ModelConfig()`` (random-weight Qwen2, fp32, ``--device``), built once, saved with
  ``save_pretrained`` and loaded once per side, so all start from the same weights (TRL builds its
  frozen reference from the saved folder, ours is a deep copy);
* prompts: the same ``--prompts`` (32) real Industrial train rows every step (a seeded sample),
  rendered by :func:`tawin.models.prompt.render_prompt`;
* rollout: ``constrained_beam_search`` with G = 16 beams per prompt → 16 distinct catalogue items
  (ours, and TRL + tawin rollout); TRL's own generation samples 16 completions per prompt with
  ``model.generate`` (temperature 1, no top-k/top-p, at most an item's length + EOS, no catalogue
  constraint: a completion that is no item earns 0);
* reward: binary, 1 when the completion's item is the row's target item; GRPO group advantages
  (r − mean)/(std + 1e-4); token-level clipped surrogate averaged per sequence then over
  sequences (``loss_type="grpo"``), ε = 0.2, k3 KL to the reference with β = 1e-3 (so every side
  runs the reference model) without TRL's KL bias correction; one update per rollout (old log-probs
  = new ones, detached);
* update: backward, clip the global gradient norm to 0.3, ``torch.optim.AdamW(lr=1e-4,
  weight_decay=0)`` — the same optimizer class and settings, passed to TRL through ``optimizers``.

Ours: the library's RL step, the calls :func:`tawin.rl.train.train_rl` makes for one step
(``_common.LibraryRLStep``): ``prompt_batch`` → :func:`tawin.rl.rollout.make_rollout` (``"beam"``,
G = 16) → :func:`tawin.rl.train.rl_step_loss` → :func:`tawin.train_utils.optimizer_step` (NaN
guard, backward, clip, AdamW, scheduler), with ``RLConfig(negatives="beam", reward="binary",
weighting="none", loss="grpo")``. TAWin weighting is off on every side because TRL's own
generation has no beam order to weight by; it costs a few tensor ops on [B, G].

TRL + tawin rollout: ``tawin.integrations.trl.TawinGRPOTrainer`` (trl 1.16.0, ``weighting="none"``)
with its ``BeamRollout`` as ``rollout_func``: each distinct prompt beam-searched once with the
trainer's current model, beam g returned for the g-th copy (docs/trl.md).
TRL + HF generate: plain ``GRPOTrainer``, no ``rollout_func``. TRL settings, both sides:
``per_device_train_batch_size=32`` with ``gradient_accumulation_steps = steps_per_generation = 16``
(one generation of 32 × 16 = 512 completions feeds exactly one optimizer step),
``num_iterations=1``, ``num_generations=16``, ``beta=0.001``, ``use_bias_correction_kl=False``,
``gradient_checkpointing=False`` (on by default in GRPOConfig; it only trades time for memory),
``shuffle_dataset=False`` over a dataset of exactly the 32 rows (each step sees all of them),
constant learning rate, no logging, saving or evaluation, ``report_to=[]``, ``use_cpu`` unless
``--device cuda``, ``bf16=False``. The micro-batch
(``--trl-micro-batch``) is TRL's fastest one measured here: CPU seconds of a TRL step at 16 / 32 /
64 / 128 / 512 completions per micro-batch were 14.6 / 12.1 / 12.6 / 13.3 / 15.6 (2 threads,
shared machine).

Protocol. One process, two phases: TRL + tawin rollout, then TRL + HF generate, each alternating
step by step with ours: a ``TrainerCallback`` runs one of our steps at every TRL ``on_step_end``,
so load from other jobs on the machine hits both sides of a phase alike. A TRL step is timed from
the end of the previous callback to its ``on_step_end`` (data loading, rollout, reward, reference
and policy passes, backward, clip, step, TRL bookkeeping); our step is timed around the library
step. On a GPU each clock read waits for the queued work first. The first ``--warmup`` steps of
each side are not timed. Reported per TRL side: median seconds per step, the ratio to ours (same
phase) and the median of the per-step ratios (adjacent pairs: slow load drifts cancel), and CPU
seconds (``time.process_time``), which depend less on other jobs. ``same_first_rollout``: ours
and TRL + tawin rollout (identical weights) found the same 16 items for every prompt.

Threads. ``torch.set_num_threads(--threads)``, and ``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it (``_common``): without it, on the shared 2-core machine (load ≈ 10), this
measured 1.9× in 9.3 min instead of ≈ 6× in 5.7 min, for reasons unrelated to either trainer.

Results (this machine, 2 threads, shared, defaults, before the HF-generate column; see the JSON for
the rest): ours ≈ 4.5–7 s per step, TRL + tawin rollout ≈ 25–47 s; ratio 5.1–6.5× over runs at TRL
micro-batches 32–512 (5.1–5.7× at 32). Our step is matmul-bound (``aten::mm`` + ``addmm`` ≈ 60–70 %
of its CPU time): beam rollout ≈ 1 s, policy + reference log-probs ≈ 2 s, backward ≈ 2 s, clip +
AdamW ≈ 0.05 s.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM

from tawin.data.formats.canonical import load_dataset
from tawin.items.codec import ItemCodec
from tawin.models.batching import EncodedSplit, encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender
from tawin.rl.config import RLConfig

from _common import (
    DATASET,
    LibraryRLStep,
    benchmark_parser,
    common_problems,
    count_parameters,
    device_name,
    log,
    sample_split,
    setup,
    synchronize,
    versions,
)

GROUP = 16
"""G: beams (negatives) per prompt."""
RL = RLConfig(
    negatives="beam",
    reward="binary",
    weighting="none",
    loss="grpo",
    group_size=GROUP,
    kl_beta=1e-3,
    lr=1e-4,
    max_grad_norm=0.3,
    weight_decay=0.0,
    warmup_ratio=0.0,
)
"""Our side's settings; TRL's GRPOConfig below mirrors each of them."""
TRL_MICRO_BATCH = 32
"""TRL's per-device micro-batch (completions); the fastest of 16…512 for TRL here (module docstring)."""
SIDES = {"rollout": "TRL + tawin rollout", "generate": "TRL + HF generate"}
"""The TRL sides, in the order they run; each alternates with ours."""


@dataclass
class Phase:
    """Seconds per step of one TRL side and of ours beside it, in order (warm-up steps included)."""

    trl: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    trl_cpu: list[float] = field(default_factory=list)
    """CPU seconds of this process (all threads) per step: less sensitive to other jobs' load."""
    ours_cpu: list[float] = field(default_factory=list)
    ours_phases: list[dict[str, float]] = field(default_factory=list)
    trl_rollout: list[float] = field(default_factory=list)
    """Seconds TRL spent inside the tawin rollout_func (the beam search) per step."""


@dataclass
class Timings:
    phases: dict[str, Phase] = field(default_factory=dict)
    ours_first_items: torch.Tensor | None = None
    """Item ids [B, G] of our first rollout, and of TRL + tawin rollout's (identical weights)."""
    trl_first_items: torch.Tensor | None = None


class OurStep:
    """The library's RL step (:class:`_common.LibraryRLStep`) on the same fixed prompts every step."""

    def __init__(self, policy: torch.nn.Module, codec: ItemCodec, encoded: EncodedSplit, total_steps: int):
        self.library_step = LibraryRLStep(policy, codec, RL, total_steps)
        self.policy, self.encoded = policy, encoded
        self.index_B = torch.arange(len(encoded))

    def __call__(self) -> tuple[dict[str, float], torch.Tensor]:
        """Run one step; (seconds per phase, the rollout's item positions [B, G] on the CPU)."""
        generator = torch.Generator().manual_seed(1_000_003 + self.library_step.step)
        ids_BL, mask_BL = prompt_batch(self.encoded, self.index_B)
        phases, rollout = self.library_step(ids_BL, mask_BL, self.encoded.target_R[self.index_B], generator)
        return phases.as_dict(), rollout.items_BG.cpu()


def timed_rollout(items, tokenizer, max_prompt_tokens: int, phase: Phase, timings: Timings):
    """tawin's BeamRollout, timed per call; it keeps its first beams for `same_first_rollout`."""
    from tawin.integrations.trl import BeamRollout

    class TimedRollout(BeamRollout):
        def __call__(self, prompts, trainer):
            started = time.perf_counter()
            output = super().__call__(prompts, trainer)
            phase.trl_rollout.append(time.perf_counter() - started)
            if timings.trl_first_items is None:
                timings.trl_first_items = torch.tensor(output["item"]).view(-1, GROUP)
            return output

    return TimedRollout(items, tokenizer, "sid", max_prompt_tokens)


def generated_item_reward(codec: ItemCodec, item_ids):
    """Binary reward for TRL's own generation: the completion's tokens name the target item
    (item tokens + EOS, as the catalogue spells it); anything else earns 0."""
    spelling = {
        tuple(codec.target_table_NL[n, : codec.target_len_N[n]].tolist()): int(item_ids[n])
        for n in range(len(item_ids))
    }

    def generated_item_reward(completion_ids: list, target: list[int], **_) -> list[float]:
        return [float(spelling.get(tuple(ids)) == t) for ids, t in zip(completion_ids, target)]

    return generated_item_reward


def trl_config(
    output_dir: str, prompts: int, micro_batch: int, max_completion: int, total_steps: int, device: torch.device
):
    from trl import GRPOConfig

    accumulation = prompts * GROUP // micro_batch
    return GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_iterations=1,
        num_generations=GROUP,
        max_completion_length=max_completion,
        beta=RL.kl_beta,
        use_bias_correction_kl=False,
        loss_type="grpo",
        scale_rewards="group",
        epsilon=RL.clip_eps_low,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
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


def build_trl(
    side: str,
    model_dir: str,
    output_dir: str,
    rows,
    dataset,
    recommender,
    args,
    total_steps: int,
    phase: Phase,
    timings: Timings,
    device: torch.device,
):
    """The TRL trainer of `side`: TawinGRPOTrainer + the beam rollout, or plain GRPOTrainer + generate."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    from tawin.integrations.trl import TawinGRPOTrainer, TawinSettings

    codec, tokenizer, max_prompt = recommender.codec, recommender.tokenizer, recommender.config.max_prompt_tokens
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = trl_config(output_dir, len(rows), args.trl_micro_batch, int(codec.target_len_N.max()), total_steps, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=RL.lr, weight_decay=RL.weight_decay)
    rollout = timed_rollout(dataset.items, tokenizer, max_prompt, phase, timings)
    common = dict(
        model=model,
        args=config,
        train_dataset=rollout.dataset(rows),
        processing_class=tokenizer,
        optimizers=(optimizer, None),
        rollout_func=rollout if side == "rollout" else None,
    )
    if side == "rollout":
        settings = TawinSettings(reward=RL.reward, weighting=RL.weighting)
        trainer = TawinGRPOTrainer(**common, items=dataset.items, tawin=settings, max_prompt_tokens=max_prompt)
    else:
        trainer = GRPOTrainer(**common, reward_funcs=generated_item_reward(codec, dataset.items.item_id))
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    return trainer


def make_alternator(
    side: str, ours: OurStep, phase: Phase, timings: Timings, item_ids, profile: bool, device: torch.device
):
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
            phase.trl.append(time.perf_counter() - self.trl_started)
            phase.trl_cpu.append(time.process_time() - self.trl_cpu_started)
            cpu = time.process_time()
            phases, items_BG = ours()
            phase.ours_cpu.append(time.process_time() - cpu)
            phase.ours.append(sum(phases.values()))
            phase.ours_phases.append(phases)
            if timings.ours_first_items is None:
                timings.ours_first_items = torch.as_tensor(item_ids)[items_BG]
            log(f"  {SIDES[side]} step {state.global_step}: TRL {phase.trl[-1]:.2f}s  ours {phase.ours[-1]:.2f}s")
            if profile and side == "rollout" and state.global_step == state.max_steps:
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
    return [
        {
            "op": e.key,
            "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in rows
    ]


def parse_args(argv: list[str] | None = None):
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--prompts", type=int, default=32, help="prompts per step: real Industrial train rows (default 32)"
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per side after warm-up; medians over them (default 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first (default 1)")
    parser.add_argument(
        "--trl-micro-batch",
        type=int,
        default=TRL_MICRO_BATCH,
        help=f"TRL's per_device_train_batch_size; gradient accumulation makes up the prompts × {GROUP} "
        f"completions of one optimizer step (default {TRL_MICRO_BATCH}, TRL's fastest measured)",
    )
    parser.add_argument("--no-hf-generate", action="store_true", help="leave out the TRL + HF generate column")
    parser.add_argument("--profile", action="store_true", help="profile one extra step of ours with torch.profiler")
    parser.add_argument("--quick", action="store_true", help="smoke test: --prompts 8 --steps 2 --warmup 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.steps, args.warmup = 8, 2, 1
    problems = common_problems(args) + [
        f"--{name}={getattr(args, name)} must be ≥ {low}"
        for name, low in (("prompts", 1), ("steps", 1), ("warmup", 0))
        if getattr(args, name) < low
    ]
    completions = args.prompts * GROUP
    args.trl_micro_batch = min(args.trl_micro_batch, completions)
    if args.trl_micro_batch < 1 or completions % args.trl_micro_batch:
        problems.append(
            f"--trl-micro-batch={args.trl_micro_batch} must divide the {completions} completions of a step "
            f"(--prompts {args.prompts} × G={GROUP}) so one optimizer step covers them all"
        )
    if problems:
        parser.error("; ".join(problems))
    return args


def median(values: list[float], warmup: int) -> float:
    return statistics.median(values[warmup:])


def side_summary(phase: Phase, warmup: int) -> dict:
    """Medians of one TRL side and of ours beside it (warm-up dropped), and their ratios."""
    trl_s, ours_s = phase.trl[warmup:], phase.ours[warmup:]
    summary = {
        "seconds_per_step_trl": [round(s, 3) for s in trl_s],
        "seconds_per_step_ours": [round(s, 3) for s in ours_s],
        "median_s_trl": round(statistics.median(trl_s), 4),
        "median_s_ours": round(statistics.median(ours_s), 4),
        "ratio": round(statistics.median(trl_s) / statistics.median(ours_s), 2),
        "ratio_paired_median": round(statistics.median(t / o for o, t in zip(ours_s, trl_s)), 2),
        "median_cpu_s_trl": round(median(phase.trl_cpu, warmup), 4),
        "median_cpu_s_ours": round(median(phase.ours_cpu, warmup), 4),
        "ratio_cpu_time": round(median(phase.trl_cpu, warmup) / median(phase.ours_cpu, warmup), 2),
    }
    if phase.trl_rollout:
        summary["median_rollout_func_s_trl"] = round(median(phase.trl_rollout, warmup), 4)
        summary["rollout_func_calls"] = len(phase.trl_rollout)
    return summary


def summarize(args, timings: Timings, parameters: int, seconds: float, device: torch.device) -> dict:
    """The JSON summary: per TRL side and for ours, medians and ratios; settings, versions."""
    sides = {side: side_summary(phase, args.warmup) for side, phase in timings.phases.items()}
    main = sides["rollout"]  # the keys that earlier runs (and gpu_paper_report.py) read
    first = timings.phases["rollout"].ours_phases[args.warmup :]
    accumulation = args.prompts * GROUP // args.trl_micro_batch
    return {
        "benchmark": "one RL step: tawin loop vs TRL GRPOTrainer (tawin rollout; HF generate)",
        "dataset": DATASET,
        "model": {
            "config": "ModelConfig() default Qwen2",
            "parameters": parameters,
            "dtype": "float32",
            "device": device_name(device),
        },
        "prompts_per_step": args.prompts,
        "group_size": GROUP,
        "completions_per_step": args.prompts * GROUP,
        "kl_beta": RL.kl_beta,
        "lr": RL.lr,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "table_median_s_per_step": {
            "tawin step": main["median_s_ours"],
            **{SIDES[side]: summary["median_s_trl"] for side, summary in sides.items()},
        },
        **{key: main[key] for key in ("median_s_ours", "median_s_trl", "ratio", "ratio_paired_median")},
        "steps_per_s_ours": round(1 / main["median_s_ours"], 4),
        "steps_per_s_trl": round(1 / main["median_s_trl"], 4),
        "sides": sides,
        "median_phase_s_ours": {name: round(statistics.median(p[name] for p in first), 4) for name in first[0]},
        "same_first_rollout": bool(torch.equal(timings.ours_first_items, timings.trl_first_items)),
        "trl_settings": {
            "per_device_train_batch_size": args.trl_micro_batch,
            "gradient_accumulation_steps": accumulation,
            "steps_per_generation": accumulation,
            "num_iterations": 1,
            "num_generations": GROUP,
            "beta": RL.kl_beta,
            "loss_type": "grpo",
            "use_bias_correction_kl": False,
            "gradient_checkpointing": False,
        },
        "versions": versions("torch", "transformers", "trl", "accelerate", "datasets"),
        "seconds_total": round(seconds, 1),
    }


def log_table(summary: dict) -> None:
    """The three columns, one line each, on stderr."""
    log("median seconds per step (steps/s, ours ×):")
    for name, seconds in summary["table_median_s_per_step"].items():
        slower = seconds / summary["median_s_ours"]
        log(f"  {name:<22} {seconds:8.3f} s  ({1 / seconds:.3f} steps/s, {slower:.2f}× ours)")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError as error:
        sys.exit(f"{error}: this benchmark needs the trl extra (trl==1.16.0): pip install -e '.[trl]'")
    device = setup(args)
    started = time.perf_counter()
    dataset = load_dataset(DATASET)
    rows = sample_split(dataset, "train", args.prompts, args.seed)
    model_config = ModelConfig()
    recommender = build_recommender(model_config, dataset.items, seed=args.seed)
    encoded = encode_split(
        rows, dataset.items, recommender.codec, recommender.tokenizer, model_config.max_prompt_tokens
    )
    total_steps = args.warmup + args.steps
    timings, profile_table = Timings(), None
    with tempfile.TemporaryDirectory() as model_dir, tempfile.TemporaryDirectory() as output_dir:
        recommender.model.save_pretrained(model_dir)
        policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
        for side in [s for s in SIDES if not (s == "generate" and args.no_hf_generate)]:
            # Ours restarts from the saved weights with each phase, as the TRL side does.
            policy.load_state_dict(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict())
            ours = OurStep(policy, recommender.codec, encoded, total_steps)
            phase = timings.phases.setdefault(side, Phase())
            trainer = build_trl(
                side, model_dir, output_dir, rows, dataset, recommender, args, total_steps, phase, timings, device
            )
            alternate = make_alternator(side, ours, phase, timings, dataset.items.item_id, args.profile, device)
            trainer.add_callback(alternate)
            alternate.restart()
            trainer.train()
            profile_table = profile_table or alternate.profile_table

    summary = summarize(args, timings, count_parameters(policy), time.perf_counter() - started, device)
    if profile_table is not None:
        summary["profile_ours_top_ops"] = profile_table
    log_table(summary)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
