"""TAWin from TRL: SFT with tawin, RL with TRL's GRPOTrainer + tawin's beam rollout + TAWin (σ* = 2),
then `tawin eval` of both checkpoints on test rows. Small settings: a few minutes on 2 CPU cores.

    pip install -e '.[trl]'
    python examples/trl_tawin.py                  # the built-in small model on the shipped Industrial data
    python examples/trl_tawin.py --model smollm2  # or a Hugging Face causal LM by name, e.g. Qwen/Qwen2.5-0.5B
"""

import argparse
import json
import sys

import numpy as np
from trl import GRPOConfig

from tawin.cli import main as tawin
from tawin.data import load_dataset
from tawin.integrations.trl import BeamRollout, TawinGRPOTrainer, TawinSettings, save_checkpoint
from tawin.models.build import load_recommender
from tawin.run.config import dataset_path

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None, help="a Hugging Face causal LM (default: the built-in small model)")
parser.add_argument("--out", default="runs/trl-example", help="output folder (default runs/trl-example)")
parser.add_argument("--rl-steps", type=int, default=20, help="GRPO steps of 8 prompts × G = 16 beams (default 20)")
args = parser.parse_args()
out, model = args.out, ["--model", args.model] if args.model else []
small_sft = ["--set", "sft.epochs=1", "--set", "sft.first_train_rows=8000", "--set", "sft.eval_rows=200"]
if tawin(["sft", "--out", f"{out}/sft", "--no-progress", *model, *small_sft]):
    sys.exit("tawin sft failed")

# RL with TRL from the SFT checkpoint, on the latest 20% of the train rows (as configs/demo.yaml).
dataset = load_dataset(dataset_path("industrial"))
recommender = load_recommender(f"{out}/sft/best", dataset.items)  # TRL loads its reference from the same folder
train = dataset.splits["train"]
model_config = recommender.config
rollout = BeamRollout(dataset.items, recommender.tokenizer, model_config.item_repr, model_config.max_prompt_tokens)
config = GRPOConfig(  # tawin's RL settings; docs/trl.md lists where TRL's defaults differ
    output_dir=f"{out}/trl",
    num_generations=16,
    per_device_train_batch_size=8 * 16,
    max_steps=args.rl_steps,
    loss_type="grpo",
    beta=1e-3,
    use_bias_correction_kl=False,
    disable_dropout=True,
    learning_rate=3e-5,
    lr_scheduler_type="cosine",
    max_grad_norm=0.3,
    max_completion_length=16,
    gradient_checkpointing=False,
    bf16=False,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = TawinGRPOTrainer(
    model=recommender.model,
    args=config,
    items=dataset.items,
    processing_class=recommender.tokenizer,
    train_dataset=rollout.dataset(train.take(np.arange(int(0.8 * len(train)), len(train)))),
    tawin=TawinSettings(reward="binary", weighting="tawin", target_k=3),
    rollout_func=rollout,
)
trainer.train()
save_checkpoint(trainer, recommender, f"{out}/rl")

# Full-catalogue evaluation of both checkpoints with tawin (500 test rows, 20 beams).
small_eval = ["--set", "eval.sample_size=500", "--beams", "20", "--no-progress", "--overwrite"]  # a rerun's new RL
for stage in ("sft/best", "rl"):
    if tawin(["eval", "--checkpoint", f"{out}/{stage}", "--out", f"{out}/eval-{stage.split('/')[0]}", *small_eval]):
        sys.exit(f"tawin eval of {stage} failed")
    with open(f"{out}/eval-{stage.split('/')[0]}/metrics.json") as stream:
        metrics = json.load(stream)
    print(stage, {k: round(v, 4) for k, v in metrics.items() if k.startswith(("recall@", "ndcg@"))})
