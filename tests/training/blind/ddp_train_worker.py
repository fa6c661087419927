"""Run under `torchrun --nproc_per_node=2`: train a method end to end with the real trainer (DDP,
gloo) and save what each rank ends with to `OUT/rank<r>.pt`.

    ddp_train_worker.py DATA OUT METHOD
"""

import os
import sys

import torch

from training.trainer import TrainConfig, Trainer


def main(data, out, method):
    torch.set_num_threads(1)
    opts = {"first_epochs": 1} if method == "jtt" else {}
    cfg = TrainConfig(method=method, method_options=opts, epochs=2, batch_size=32, device="cpu", image_size=32,
                      model_kwargs={"widths": (8, 16, 16, 16)})
    trainer = Trainer(data, f"{out}/run", cfg, progress=False)
    trainer.fit()
    rank = int(os.environ["RANK"])
    state = {"model": trainer.model.state_dict(), "method": trainer.method.state_dict()}
    torch.save(state, f"{out}/rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
