"""`argus train`: train a model on a dataset folder (ERM or a registered method)."""

from __future__ import annotations

import warnings

import click

from argus.commands.shared import KeyValue, NameChoice, cli_errors, config_default, options_dict

CONFIG = "training.trainer:TrainConfig"


@click.command("train")
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset folder.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder (model.pt, model.json, metrics.json).")
@click.option("--arch", default=config_default(CONFIG, "arch"), show_default=True,
              type=NameChoice("training.models:ARCHITECTURES"))
@click.option("--method", default=config_default(CONFIG, "method"), show_default=True,
              type=NameChoice("training.methods:METHODS"), help="Training method.")
@click.option("--method-option", "method_options", multiple=True, type=KeyValue(),
              help="Option for the method (repeatable; JSON values).")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Epochs [default: sized by steps: at least 15 epochs and 500 optimisation steps].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--batch-size", default=config_default(CONFIG, "batch_size"), show_default=True, type=click.IntRange(min=1),
              help="Global mini-batch.")
@click.option("--lr", default=None, type=float, help="Peak learning rate [default: 0.05 (sgd)].")
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(["sgd", "adamw"]))
@click.option("--weight-decay", default=config_default(CONFIG, "weight_decay"), show_default=True, type=float)
@click.option("--image-size", default=None, type=click.IntRange(min=16), help="Model input side (default: the dataset's).")
@click.option("--weights", default=None, type=click.Path(exists=True, dir_okay=False), help="Torchvision state dict to start from (resnets).")
@click.option("--augment", default=None, metavar="flip,shift|shift|none",
              help="Augmentations [default: the dataset's dataset.json 'augment' field, else shift only: "
                   "no mirroring unless the data says so].")
@click.option("--no-augment", is_flag=True, help="No augmentation (same as --augment none).")
@click.option("--no-amp", is_flag=True, help="No mixed precision on CUDA.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Processes decoding images (once; cached).")
@click.option("--resume", is_flag=True, help="Continue from RUN/last.pt.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@cli_errors
def train(data_root, out, arch, method, method_options, epochs, seed, device, batch_size, lr, optimizer, weight_decay, image_size, weights,
          augment, no_augment, no_amp, workers, resume, quiet):
    """Train a model; the selected checkpoint is RUN/model.pt (worst-class val accuracy by default).

    Under `torchrun --nproc-per-node N -m argus train ...` it trains with DDP.
    """
    from training.datasets import DatasetError, parse_augment
    from training.trainer import Trainer, TrainConfig, UndertrainedWarning

    if augment is not None:
        try:
            parse_augment(augment)
        except DatasetError as exc:
            raise click.BadParameter(str(exc), param_hint="--augment") from None
    cfg = TrainConfig(arch=arch, method=method, method_options=options_dict(method_options), seed=seed, device=device,
                      optimizer=optimizer, image_size=image_size, weights=weights,
                      augment="none" if no_augment else augment, amp=not no_amp, workers=workers)
    if epochs is not None:
        cfg.epochs = epochs
    cfg.batch_size = batch_size
    if lr is not None:
        cfg.lr = lr
    elif optimizer == "adamw":
        cfg.lr = 2e-3
    cfg.weight_decay = weight_decay
    trainer = Trainer(data_root, out, cfg, progress=not quiet)
    with warnings.catch_warnings():  # reported below as one readable line
        warnings.simplefilter("ignore", UndertrainedWarning)
        metrics = trainer.fit(resume=resume)
    if trainer.is_main:
        best = next((r for r in metrics["epochs"] if r["epoch"] == metrics.get("best_epoch")), None)
        msg = f"trained {arch} ({method}) for {trainer.epochs} epochs in {metrics.get('train_time_s', 0):.0f}s on {metrics.get('device')}"
        if best and "val_accuracy" in best:
            msg += f"; selected epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, worst class {best['val_worst_class_accuracy']:.4f}"
        click.echo(msg + f"\nmodel: {out}/model.pt")
        for reason in metrics.get("undertrained") or ():
            click.echo(f"warning: the run looks under-trained: {reason}", err=True)
