"""The paper's regime on one GPU — the probe and the plan: measure each unit of work once, then size
every stage of `gpu_paper.py` to its time budget.

The probe builds the configured model once and times, with the library's own functions, what the
stages repeat: an SFT optimizer step (`sft_loss` → `optimizer_step`, sft.batch_size rows), an
evaluation batch (`beam_predictions`, eval.batch_size test rows at eval.num_beams beams), an RL
step (`_common.LibraryRLStep`: rollout → loss → update, rl.batch_size prompts × G) and a
checkpoint's save and load. Each timing is the median after one untimed warm-up. It also encodes
the train, valid and test splits, which the session caches for the stages.

The plan (pure arithmetic, :func:`plan_sizes`) spends `margin` of each stage's budget:

    SFT:  e·(S·t_sft + V·t_row + 7·t_save) + t_build ≤ margin·B_sft   (e epochs of S steps, V valid rows)
    RL:   N·t_rl + V_rl·t_row + 7·t_save + t_load   ≤ margin·B_rl     (N steps)
    eval: R·t_row + t_load                          ≤ margin·B_eval   (R test rows, the same for every method)

A checkpoint with its optimizer state (``last/``) costs 3 model saves; each loop writes one halfway
(save_every = half its steps, so a stage stopped at its budget leaves one) and one at the end,
plus best/ or final/. The budgets themselves are enforced by `gpu_paper.py` (a stage still running
at its budget is stopped); the plan only makes that rare.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tawin.eval.evaluate import beam_predictions
from tawin.models.batching import prompt_batch
from tawin.models.build import build_recommender, save_recommender
from tawin.models.loss import sft_loss
from tawin.run.config import PipelineConfig
from tawin.run.session import Session
from tawin.train_utils import adamw_warmup_cosine, optimizer_step

from _common import LibraryRLStep, synchronize

SAVES_PER_CHECKPOINT = 3
"""A resumable checkpoint (model + AdamW's two moments) costs about three model saves."""


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work, as the probe measured them on this machine."""

    build_s: float
    """Building the configured model (e.g. de-quantising SmolLM2's GGUF) and moving it to the device."""
    save_s: float
    """save_recommender of the model."""
    load_s: float
    """Session.load of a saved checkpoint."""
    sft_step_s: float
    """One SFT optimizer step of sft.batch_size rows."""
    eval_row_s: float
    """One test row in eval.batch_size batches at eval.num_beams beams (also used for valid rows)."""
    rl_step_s: float
    """One RL step: rollout of rl.batch_size prompts × G, loss, update."""


@dataclass(frozen=True)
class Budgets:
    """Wall-clock seconds allowed to each stage; a stage still running at its budget is stopped."""

    probe: float
    sft: float
    eval: float
    """Each of the four evaluations."""
    rl: float
    """Each of the three RL runs."""

    def total(self, n_evals: int = 4, n_rl: int = 3) -> float:
        return self.probe + self.sft + n_evals * self.eval + n_rl * self.rl


@dataclass(frozen=True)
class Caps:
    """Upper bounds on the sizes whatever the budgets allow (the CPU dry run sets them); None = none."""

    sft_rows: int | None = None
    rl_steps: int | None = None
    eval_rows: int | None = None


@dataclass(frozen=True)
class Plan:
    """Sizes of every stage and the seconds each is expected to take."""

    sft_epochs: int
    sft_max_train_rows: int
    """sft.first_train_rows (the key keeps its earlier name in plan JSON files); 0 = every train row
    (the plan fits at least one whole epoch)."""
    sft_steps: int
    """Steps per epoch."""
    sft_save_every: int
    sft_eval_rows: int
    rl_steps: int
    rl_save_every: int
    rl_eval_rows: int
    eval_rows: int
    """0 = the whole test split."""
    estimate_s: dict

    def overrides(self) -> list[str]:
        """The --set overrides that apply the plan to the paper config."""
        return [
            f"sft.epochs={self.sft_epochs}",
            f"sft.first_train_rows={self.sft_max_train_rows}",
            f"sft.save_every={self.sft_save_every}",
            f"sft.eval_rows={self.sft_eval_rows}",
            f"rl.max_steps={self.rl_steps}",
            f"rl.save_every={self.rl_save_every}",
            f"rl.eval_rows={self.rl_eval_rows}",
            f"eval.sample_size={self.eval_rows}",
        ]

    def as_dict(self) -> dict:
        return asdict(self)


def plan_sizes(
    rates: Rates,
    budgets: Budgets,
    config: PipelineConfig,
    n_rows: dict[str, int],
    margin: float = 0.8,
    caps: Caps = Caps(),
) -> Plan:
    """Size SFT, RL and evaluation so each takes about `margin` of its budget (module docstring).

    `n_rows` holds the number of rows of the train, valid and test splits; every size is at least
    one step or one batch and at most what the config asks for."""
    sft, rl, evaluation = config.sft, config.rl, config.eval
    save = rates.save_s * (2 * SAVES_PER_CHECKPOINT + 1)  # halfway + end of a loop, and best/ or final/
    # Valid rows scored at the end of each SFT epoch: the config's, at most ~15% of the SFT budget.
    valid_rows = min(
        sft.eval_rows or n_rows["valid"], max(evaluation.batch_size, int(0.15 * budgets.sft / rates.eval_row_s))
    )
    epoch_fixed = valid_rows * rates.eval_row_s + save
    steps_per_epoch = math.ceil(n_rows["train"] / sft.batch_size)
    spare = margin * budgets.sft - rates.build_s
    steps = max(1, int((spare - epoch_fixed) / rates.sft_step_s))
    if caps.sft_rows is not None:
        steps = min(steps, max(1, caps.sft_rows // sft.batch_size))
    if steps >= steps_per_epoch:
        epochs = max(1, min(sft.epochs, int(spare / (steps_per_epoch * rates.sft_step_s + epoch_fixed))))
        first_train_rows, steps = 0, steps_per_epoch
    else:
        epochs, first_train_rows = 1, steps * sft.batch_size
    sft_s = rates.build_s + epochs * (steps * rates.sft_step_s + epoch_fixed)

    rl_valid_rows = min(rl.eval_rows or n_rows["valid"], evaluation.batch_size)
    rl_fixed = rates.load_s + rl_valid_rows * rates.eval_row_s + save
    rl_steps = max(1, int((margin * budgets.rl - rl_fixed) / rates.rl_step_s))
    rl_steps = min(
        rl_steps, rl.max_steps or rl_steps, max(1, n_rows["train"] // rl.batch_size), caps.rl_steps or rl_steps
    )
    rl_s = rl_fixed + rl_steps * rates.rl_step_s

    eval_rows = max(
        min(evaluation.batch_size, n_rows["test"]), int((margin * budgets.eval - rates.load_s) / rates.eval_row_s)
    )
    eval_rows = min(eval_rows, evaluation.sample_size or n_rows["test"], caps.eval_rows or n_rows["test"])
    eval_s = rates.load_s + eval_rows * rates.eval_row_s
    return Plan(
        epochs,
        first_train_rows,
        steps,
        max(1, math.ceil(steps / 2)),
        valid_rows,
        rl_steps,
        max(1, math.ceil(rl_steps / 2)),
        rl_valid_rows,
        0 if eval_rows >= n_rows["test"] else eval_rows,
        {"sft": round(sft_s, 1), "rl": round(rl_s, 1), "eval": round(eval_s, 1)},
    )


def _median_time(fn, device: torch.device, repeats: int = 2) -> float:
    """Median wall seconds of `repeats` calls of fn() after one untimed warm-up call."""
    seconds = []
    for attempt in range(repeats + 1):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        if attempt:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def probe(session: Session, config: PipelineConfig, rl_config, work: Path) -> Rates:
    """Time one unit of each stage's work with the library's functions (module docstring)."""
    device, sft, evaluation = session.device, config.sft, config.eval
    started = time.perf_counter()
    recommender = build_recommender(config.model, session.dataset.items, seed=config.seed)
    recommender.model.to(device)
    synchronize(device)
    build_s = time.perf_counter() - started
    tokens = config.model.max_prompt_tokens
    train, _, test = (session.encoded(recommender, split, tokens) for split in ("train", "valid", "test"))
    rng = np.random.default_rng(config.seed)
    model, codec = recommender.model, recommender.codec

    index_B = torch.from_numpy(rng.choice(len(train), size=min(sft.batch_size, len(train)), replace=False))
    optimizer, scheduler = adamw_warmup_cosine(model.parameters(), sft.lr, sft.weight_decay, 0, 10)
    steps = iter(range(10))

    def sft_step():
        loss, _ = sft_loss(model, codec, train, index_B, session.bf16, session.dist)
        optimizer_step(loss, model.parameters(), optimizer, scheduler, sft.max_grad_norm, next(steps), "sft")

    model.train()
    sft_step_s = _median_time(sft_step, device)
    optimizer = scheduler = None  # frees the optimizer state before the next probe (sft_step still refers to them)

    rows = np.sort(rng.choice(len(test), size=min(evaluation.batch_size, len(test)), replace=False))
    beam_predictions(
        recommender, session.dataset, test, rows[:1], 2, 1, progress=False, log=False
    )  # one-off set-up costs
    eval_s = _median_time(
        lambda: beam_predictions(
            recommender,
            session.dataset,
            test,
            rows,
            evaluation.num_beams,
            evaluation.batch_size,
            progress=False,
            log=False,
        ),
        device,
        repeats=1,
    )

    rl_index = torch.from_numpy(rng.choice(len(train), size=min(rl_config.batch_size, len(train)), replace=False))
    ids_BL, mask_BL = prompt_batch(train, rl_index)
    library_step = LibraryRLStep(model, codec, rl_config, total_steps=10, bf16=session.bf16)
    rl_step_s = _median_time(
        lambda: library_step(ids_BL, mask_BL, train.target_R[rl_index], torch.Generator().manual_seed(0)), device
    )
    library_step = None  # frees the RL step's models before the next probe

    with tempfile.TemporaryDirectory(dir=work) as folder:
        save_s = _median_time(lambda: save_recommender(recommender, Path(folder) / "model"), device, repeats=1)
        load_s = _median_time(lambda: session.load(Path(folder) / "model"), device, repeats=1)
    return Rates(build_s, save_s, load_s, sft_step_s, eval_s / len(rows), rl_step_s)
