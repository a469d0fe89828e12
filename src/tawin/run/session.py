"""Orchestration — a session: the loaded dataset, the runtime, and each split encoded once.

A :class:`Session` is opened from a config's ``data`` section and runtime fields (seed, device,
precision, threads), then serves any number of stages and experiment cells on that dataset. It is
immutable: stages take their config as an argument and never change the session. Encoded splits
are cached under a key of everything that determines them (the tokenizer's full definition, the
items' prompt texts, ``model.max_prompt_tokens`` and the split), so a checkpoint whose tokenizer
encodes differently can never be handed another's encoding, while every checkpoint of one model
reuses the same tensors (re-tokenising the Industrial train split costs ~6 s).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tawin.checkpoint import seed_everything
from tawin.data.dataset import Dataset, Split
from tawin.data.formats.canonical import load_dataset
from tawin.data.protocol.holdout import keep_latest_train_rows
from tawin.distributed import Dist, init_distributed
from tawin.errors import ConfigError
from tawin.items.codec import ItemCodec
from tawin.models.batching import EncodedSplit, encode_split
from tawin.models.build import RecommenderLM, load_recommender
from tawin.run.config import PipelineConfig, Stage, dataset_path
from tawin.runtime import pick_device, use_bf16
from tawin.tracking import TrackerRun, Tracking
from tawin.train_utils import RunContext


def setup_runtime(config: PipelineConfig) -> tuple[torch.device, bool]:
    """Apply the config's thread count and seed; returns (device, whether to use bf16 autocast)."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    return device, use_bf16(config.precision, device)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides how `tokenizer` encodes text: its class, its full backend definition
    (vocabulary, merges, normalizer, pre-tokenizer, post-processor) or, without a fast backend, its
    vocabulary and init arguments, and its special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = backend.to_str()
    else:
        definition = json.dumps([sorted(tokenizer.get_vocab().items()), repr(sorted(tokenizer.init_kwargs.items()))])
    flags = [getattr(tokenizer, name, None) for name in ("add_bos_token", "add_eos_token")]
    parts = [
        type(tokenizer).__qualname__,
        definition,
        json.dumps(tokenizer.special_tokens_map, sort_keys=True),
        repr(flags),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def codec_fingerprint(codec: ItemCodec) -> str:
    """sha256 of what the codec puts into a prompt: each item's prompt text and the padding id."""
    return hashlib.sha256(json.dumps([codec.representation, codec.pad_id, codec.prompt_text]).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Session:
    """The dataset and runtime of one command (or of every cell of an experiment)."""

    dataset: Dataset
    device: torch.device
    bf16: bool
    """bf16 autocast in training and decoding (float32 master weights)."""
    dist: Dist
    progress: bool
    """Progress bars (on the main process only)."""
    runtime: dict
    """The config fields this session was opened with (data and runtime); stages must share them."""
    tracking: Tracking = field(default_factory=Tracking, repr=False)
    """The command's tracker runs (``report_to``): stages open and log to them here."""
    _encodings: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, config: PipelineConfig, progress: bool = True) -> Session:
        """Set up the runtime, load and validate the dataset, and check `config` against it.

        Raises the dataset's DataError, or one ConfigError listing every rule of `config` that
        the dataset breaks, before anything is trained or written."""
        device, bf16 = setup_runtime(config)
        dist = init_distributed(device)
        # Every stage (SFT, RL, popularity, an experiment's baselines) reads train through here.
        dataset = keep_latest_train_rows(load_dataset(dataset_path(config.data.dataset)), config.data.latest_train_rows)
        session = cls(dataset, device, bf16, dist, progress and dist.is_main, _runtime_fields(config))
        session.check(config)
        return session

    def check(self, *configs: PipelineConfig) -> None:
        """One ConfigError for every config (of the same dataset and runtime) that this dataset rules out."""
        problems = []
        for config in configs:
            assert _runtime_fields(config) == self.runtime, "a session serves configs of one dataset and runtime only"
            problems += [p for p in config.check_dataset(self.dataset) if p not in problems]
        self._refuse(problems)

    def check_searches(self, config: PipelineConfig, stages: tuple[Stage, ...]) -> None:
        """A ConfigError when a search of `stages` needs more items than the catalogue holds."""
        self._refuse(config.search_problems(len(self.dataset.items), stages))

    def _refuse(self, problems: list[str]) -> None:
        if problems:
            raise ConfigError(
                f"invalid configuration for the dataset {self.dataset.name}: " + "; ".join(problems) + "."
            )

    def encoded(self, recommender: RecommenderLM, split: Split, max_prompt_tokens: int) -> EncodedSplit:
        """The split's prompts tokenised by `recommender`, computed once per distinct encoding."""
        key = (
            tokenizer_fingerprint(recommender.tokenizer),
            codec_fingerprint(recommender.codec),
            max_prompt_tokens,
            split,
        )
        if key not in self._encodings:
            self._encodings[key] = encode_split(
                self.dataset.splits[split],
                self.dataset.items,
                recommender.codec,
                recommender.tokenizer,
                max_prompt_tokens,
            )
        return self._encodings[key]

    def context(self, config: PipelineConfig, out: Path, tracker: TrackerRun | None = None) -> RunContext:
        """What a training loop needs to know about where and how it runs, and where it reports."""
        log = print if self.dist.is_main else (lambda *_: None)
        return RunContext(
            Path(out),
            config.seed,
            self.device,
            self.bf16,
            progress_bars=self.progress,
            log=log,
            dist=self.dist,
            compile=config.compile,
            tracker=tracker,
        )

    def load(self, checkpoint: str | Path) -> RecommenderLM:
        """A saved recommender, on this session's device."""
        recommender = load_recommender(checkpoint, self.dataset.items)
        recommender.model.to(self.device)
        return recommender


def _runtime_fields(config: PipelineConfig) -> dict:
    # Not the train-row hold-out: it picks rows of the same loaded dataset.
    return {
        "dataset": config.data.dataset,
        "latest_train_rows": config.data.latest_train_rows,
        "device": config.device,
        "precision": config.precision,
        "threads": config.threads,
    }
