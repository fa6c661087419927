"""Run alone or under `torchrun --nproc_per_node=2`: train with the real trainer and save, per
epoch, every training row this process fed and the sum of its augmented, normalised input.

    ddp_draws_worker.py DATA OUT METHOD
"""

import os
import sys

import torch

import training.trainer as trainer_mod
from training.trainer import TrainConfig, Trainer

SEEN: list = []


def main(data, out, method):
    torch.set_num_threads(1)
    prepare = trainer_mod.prepare_batch

    def recording_prepare(xb, mean, std, draws=None, channels_last=True):
        x = prepare(xb, mean, std, draws, channels_last)
        SEEN.append(x.detach().double().sum(dim=(1, 2, 3)))
        return x

    trainer_mod.prepare_batch = recording_prepare  # the trainer's own batch preparation, observed

    class Recorder(Trainer):
        def _run_epoch(self, net, model, optimizer, scaler, method, epoch, total, desc):
            loss = method.loss

            def recording_loss(logits, feats, y, idx, **kw):
                rows.append(idx.cpu())
                return loss(logits, feats, y, idx, **kw)

            rows: list = []
            SEEN.clear()
            method.loss = recording_loss
            try:
                return super()._run_epoch(net, model, optimizer, scaler, method, epoch, total, desc)
            finally:
                method.loss = loss
                epochs.append({"rows": torch.cat(rows), "x_sum": torch.cat(list(SEEN))})

    epochs: list = []
    cfg = TrainConfig(method=method, epochs=2, batch_size=16, device="cpu", image_size=32,
                      model_kwargs={"widths": (4, 8, 8, 8)})
    trainer = Recorder(data, f"{out}/run-{os.environ.get('WORLD_SIZE', '1')}", cfg, progress=False)
    trainer.fit()
    draw = trainer.method.epoch_indices(1, trainer._epoch_generator(1))
    torch.save({"epochs": epochs, "draw_epoch1": draw}, f"{out}/draws-w{os.environ.get('WORLD_SIZE', '1')}-r{os.environ.get('RANK', '0')}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
