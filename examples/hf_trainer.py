"""curvlab inside the Hugging Face Trainer, on a model that computes its own loss from ``labels``.

A small GPT-2 (built from a config: nothing is downloaded) learns the Python language reference's text
(``pydoc_data``, in every Python: no apt needed), character by character.
The callback measures the model's own loss on 16 held sequences, weighting batches by their label tokens,
and logs through ``Trainer.log`` (so to every ``report_to`` integration and ``trainer.state.log_history``).

    python examples/hf_trainer.py              # about 40 s on 2 CPU cores → runs/hf_trainer/report.html
"""

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from curvlab.data import load_dataset
from curvlab.experiments.report import write_report
from curvlab.integrations.transformers import CurvlabCallback


class Sequences(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--out", default="runs/hf_trainer")
args = parser.parse_args()

text = load_dataset("python_docs", subset=1024, level="char", context=32)  # in every Python: no apt, no download
ids = torch.cat([text.x_train[:, :1], text.y_train], dim=1)  # 33-token sequences
vocab = text.n_classes
torch.manual_seed(0)
model = GPT2LMHeadModel(
    GPT2Config(vocab_size=vocab, n_positions=33, n_embd=64, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
)

held = ids[:16]
measure = [{"input_ids": held, "labels": held}]
training = TrainingArguments(
    output_dir=args.out,
    max_steps=args.steps,
    per_device_train_batch_size=32,
    learning_rate=3e-3,
    warmup_steps=30,
    logging_steps=25,
    report_to=[],
    use_cpu=True,
    save_strategy="no",
    disable_tqdm=True,
)
trainer = Trainer(model=model, args=training, train_dataset=Sequences(ids[16:]))
callback = CurvlabCallback(measure, budget=0.2, run_dir=args.out).attach(trainer)  # weighted by counted tokens
trainer.train()

for row in trainer.state.log_history:
    if "curvlab/preconditioned_sharpness" in row:
        print(
            f"step {row['step']:4d}: AdamW's preconditioned λ1 = {row['curvlab/preconditioned_sharpness']:8.1f}   "
            f"threshold 38/η = {row['curvlab/threshold']:.0f}"
        )
print("report:", write_report([args.out]))
