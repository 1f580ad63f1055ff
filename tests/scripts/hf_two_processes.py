"""Run by a test under torchrun (2 processes): a tiny GPT-2 trained by the Hugging Face Trainer on the CPU with the
default curvlab callback, rank 0's budget clock allowing a measurement at every step. Each rank writes its records'
(step, metric) pairs to OUT/rows<rank>.json."""

import json
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent.parent))
from ranks import install_impatient_clock  # noqa: E402
from zoo import TokenDataset  # noqa: E402

from curvlab.distributed import finish  # noqa: E402
from curvlab.integrations.transformers import CurvlabCallback  # noqa: E402


class ImpatientOnRank0(CurvlabCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if args.process_index == 0:
            install_impatient_clock(self.monitor)

    def on_train_end(self, args, state, control, **kwargs):
        super().on_train_end(args, state, control, **kwargs)
        rows = [(r["step"], r["metric"]) for r in self.monitor.records if not r["metric"].startswith("cost_")]
        (Path(sys.argv[1]) / f"rows{args.process_index}.json").write_text(json.dumps(rows))


def main() -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 32, (64, 12), generator=torch.Generator().manual_seed(1))
    args = transformers.TrainingArguments(
        output_dir=str(Path(sys.argv[1]) / "hf"),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        ddp_timeout=60,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=TokenDataset(ids))
    data = [{"input_ids": ids[:8], "labels": ids[:8]}, {"input_ids": ids[8:16], "labels": ids[8:16]}]
    ImpatientOnRank0(data).attach(trainer)
    trainer.train()
    finish()  # leave the process group together: a rank exiting with gloo's threads alive can abort at exit


if __name__ == "__main__":
    main()
