"""Checkpoint integrity (issue #22, items 3 and 7): a manifest of checksums in every checkpoint folder,
checked by every load, and a full disk during a checkpoint write, through the CLI.

Damaged weights that still parse must be refused with exit 2 naming the file, never evaluated to
zeros; a write that runs out of disk must exit 2, leave no temporary folder and keep the previous
checkpoint, from which a rerun resumes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch

from tawin.cli import main

from conftest import TINY_MODEL, TINY_OVERRIDES, fails, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

SFT = TINY_OVERRIDES + [
    "threads=1",
    "sft.batch_size=16",
    "sft.first_train_rows=32",
    "sft.save_every=1",
    "sft.epochs=1",
    "sft.eval_rows=4",
    "sft.eval_beams=10",
    "sft.warmup_steps=1",
]
"""Two SFT steps: a resumable checkpoint after the first, then best/ and last/ at the epoch's end."""
EVAL = ["threads=1", "eval.sample_size=4", "eval.num_beams=10", "eval.ks=1,5,10"]
RL = [
    "threads=1",
    "rl.max_steps=3",
    "rl.batch_size=4",
    "rl.group_size=4",
    "rl.save_every=1",
    "rl.eval_rows=4",
    "rl.negatives=random",
    "rl.rows.sample_size=16",
]


def command(name: str, out: Path, settings: list[str], *extra: str) -> list[str]:
    return [name, *extra, "--out", str(out), "--no-progress", *(flag for s in settings for flag in ("--set", s))]


def evaluation(checkpoint: Path, out: Path) -> list[str]:
    return command("eval", out, EVAL, "--checkpoint", str(checkpoint))


def flip_tensor_bytes(weights: Path) -> None:
    """Invert 16 bytes of tensor data: the safetensors header (its length, then JSON) still parses."""
    data = bytearray(weights.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0] + 512
    data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
    weights.write_bytes(bytes(data))


def fails_after_output(argv: list[str], capsys, pattern: str) -> str:
    """Like `fails`, for a command that logged progress on stdout before it failed."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and err.startswith("tawin: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err
    return err


def stop_on_second_call(monkeypatch, module, name: str) -> None:
    """Make `module.name`'s loss NaN from its second call on: the run stops after one checkpointed step."""
    real, calls = getattr(module, name), []

    def breaking(*args, **kwargs):
        loss, rest = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) >= 2 else loss), rest

    monkeypatch.setattr(module, name, breaking)


def global_step(last: Path) -> int:
    return torch.load(last / "trainer.pt", weights_only=False)["progress"]["global_step"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny SFT run (best/ and last/, written with manifests)."""
    out = tmp_path_factory.mktemp("run") / "sft"
    assert main(command("sft", out, SFT)) == 0
    return out


def test_every_checkpoint_folder_ends_with_a_manifest_that_leaves_its_provenance_alone(trained, tmp_path):
    from tawin.run.provenance import checkpoint_provenance

    for folder in (trained / "best", trained / "last"):
        listed = json.loads((folder / "manifest.json").read_text())["files"]
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and p.name != "manifest.json"
        }
        assert set(listed) == set(files) and {"model.safetensors", "tawin.json"} <= set(files)
        for name, data in files.items():
            assert listed[name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    without = shutil.copytree(trained / "best", tmp_path / "best", ignore=shutil.ignore_patterns("manifest.json"))
    assert checkpoint_provenance(trained / "best")["sha256"] == checkpoint_provenance(without)["sha256"]


def test_flipped_weight_bytes_are_refused_by_every_load(trained, industrial, tmp_path, capsys):
    import tawin
    from tawin.errors import UserError

    broken = shutil.copytree(trained / "best", tmp_path / "broken")
    flip_tensor_bytes(broken / "model.safetensors")
    pattern = (
        re.escape(str(broken / "model.safetensors")) + r": damaged or changed since the checkpoint was written "
        r"\(its sha256 is [0-9a-f]{12}…, manifest\.json recorded [0-9a-f]{12}…\)\. "
        r"Restore the checkpoint folder from a copy, or retrain it"
    )
    history = ",".join(str(item) for item in industrial.items.item_id[:2])
    for argv in (
        evaluation(broken, tmp_path / "out"),
        command("rl", tmp_path / "out", RL, "--init", str(broken)),
        ["recommend", "--checkpoint", str(broken), "--history", history],
    ):
        fails(argv, capsys, pattern)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=pattern):
        tawin.Recommender.from_checkpoint(broken, device="cpu")


@pytest.mark.parametrize("stage", ["sft", "rl"])
def test_resume_refuses_damaged_last_then_resumes_one_without_manifest(stage, trained, tmp_path, capsys, monkeypatch):
    import tawin.rl.train
    import tawin.sft.train

    out = tmp_path / stage
    argv = command("sft", out, SFT) if stage == "sft" else command("rl", out, RL, "--init", str(trained / "best"))
    with monkeypatch.context() as patch:  # an interrupted run: a NaN loss at step 2 keeps the step-1 checkpoint
        if stage == "sft":
            stop_on_second_call(patch, tawin.sft.train, "sft_loss")
        else:
            stop_on_second_call(patch, tawin.rl.train, "rl_step_loss")
        fails_after_output(argv, capsys, rf"{stage} step 1: the loss is .*not finite")
    last = out / "last"
    assert global_step(last) == 1
    intact = (last / "model.safetensors").read_bytes()
    flip_tensor_bytes(last / "model.safetensors")
    before = snapshot(out)
    damaged = re.escape(str(last / "model.safetensors")) + r": damaged or changed since the checkpoint was written"
    fails(argv, capsys, damaged + rf".*\. Delete {re.escape(str(last))} to restart this stage from its beginning")
    assert snapshot(out) == before

    (last / "model.safetensors").write_bytes(intact)
    (last / "manifest.json").unlink()  # as written before tawin recorded checksums: resumes as it did
    assert main(argv) == 0
    assert (out / "summary.json").exists() and (last / "manifest.json").exists()


def full_disk(kind: str, out: Path):
    """A writer that fails like a full disk half-way through the second write into `out/last`."""
    from safetensors import SafetensorError

    def stopped(stream_or_path) -> bool:
        name = str(getattr(stream_or_path, "name", stream_or_path))
        if ".last.tmp." not in name or not (out / "last").exists():
            return False
        if hasattr(stream_or_path, "write"):
            stream_or_path.write(b"\0" * 64)
        else:
            Path(stream_or_path).write_bytes(b"\0" * 64)
        return True

    if kind == "trainer-state":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if stopped(f):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(obj, f, *args, **kwargs)

        return "torch.save", save
    from transformers import modeling_utils

    real_safe_save = modeling_utils.safe_save_file
    error = (
        OSError(errno.ENOSPC, "No space left on device")
        if kind == "weights-oserror"
        else SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )

    def safe_save(tensors, filename, metadata=None):
        if stopped(filename):
            raise error
        return real_safe_save(tensors, filename, metadata=metadata)

    return "transformers.modeling_utils.safe_save_file", safe_save


DISK_FULL = (
    r": the checkpoint could not be written: the disk is full \(No space left on device; [\d.]+ MiB free "
    r"now\)\. The previous checkpoint there is kept, and no temporary files are left behind\. Free some space on "
    r"that disk, then rerun the same command: it resumes from the stage's last checkpoint, if it wrote one\."
)


@pytest.mark.parametrize("kind", ["weights-oserror", "weights-safetensors-error", "trainer-state"])
def test_full_disk_on_save_exits_2_keeps_last_checkpoint_and_resumes(kind, tmp_path, capsys, monkeypatch):
    from tawin.checkpoint import check_resumable

    out = tmp_path / "sft"
    argv = command("sft", out, SFT)
    with monkeypatch.context() as patch:
        patch.setattr(*full_disk(kind, out))
        fails_after_output(argv, capsys, re.escape(str(out / "last")) + DISK_FULL)
    assert not [p.name for p in out.iterdir() if ".tmp." in p.name]
    assert global_step(out / "last") == 1
    check_resumable(out / "last")  # the previous checkpoint is whole
    assert main(argv) == 0 and (out / "summary.json").exists()


def test_a_checkpoint_without_manifest_still_loads_but_non_finite_weights_are_refused(industrial, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from tawin.models.build import ModelConfig, build_recommender, save_recommender

    legacy = tmp_path / "legacy"  # save_recommender alone writes no manifest, like tawin before checksums
    save_recommender(build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0), legacy)
    assert main(evaluation(legacy, tmp_path / "eval")) == 0
    capsys.readouterr()
    tensors = load_file(str(legacy / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[3] = float("nan")
    save_file(tensors, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    fails(
        evaluation(legacy, tmp_path / "again"),
        capsys,
        re.escape(str(legacy / "model.safetensors")) + rf": the weights '{re.escape(name)}' hold NaN or infinite "
        r"values, so the file is damaged \(the checkpoint has no manifest\.json of checksums, so only this could be "
        r"checked\)",
    )
    assert not (tmp_path / "again").exists()
