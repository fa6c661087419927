"""The uint8 shard cache and the batch sources: exact contents, concurrent builders, crash
resume, identical batches from every source, and trainer results unchanged by the data path."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.batches import Augment, DeviceBatches, StreamedBatches, augment_uint8, make_batches
from training.datasets import load_dataset, load_split_uint8, open_split_cache
from training.image_cache import ImageCache, open_image_cache
from training.trainer import InMemoryData, TrainConfig, Trainer


class NumberedImages:
    """Image i is filled with the value i % 251 (channel c adds c); logs each call to `log_dir`."""

    def __init__(self, size=4, log_dir=None, fail_from=None):
        self.size, self.log_dir, self.fail_from = size, log_dir, fail_from

    def __call__(self, start, stop):
        if self.fail_from is not None and stop > self.fail_from:
            raise RuntimeError("renderer crashed")
        if self.log_dir is not None:
            Path(self.log_dir, f"{start}-{stop}-{os.getpid()}").touch()
        i = np.arange(start, stop)
        img = (i[:, None, None, None] % 251 + np.arange(3)[None, :, None, None]) * np.ones((1, 1, self.size, self.size))
        return img.astype(np.uint8), {"label": i % 7}


def expected(indices, size=4):
    return NumberedImages(size)(0, max(indices) + 1)[0][indices]


def test_cache_gathers_any_order_across_shards_and_keeps_columns(tmp_path):
    cache = open_image_cache(tmp_path / "c", 23, 4, NumberedImages(), shard_size=5, progress=False)
    assert len(cache) == 23 and len(cache.shards) == 5 and cache.nbytes == 23 * 3 * 16
    idx = [22, 0, 5, 4, 4, 17]
    assert np.array_equal(cache.gather(idx), expected(idx))
    assert int(cache.gather([22])[0, 2, 0, 0]) == 22 + 2
    assert np.array_equal(cache.column("label"), np.arange(23) % 7)
    assert torch.equal(cache.to_tensor(), torch.from_numpy(expected(list(range(23)))))
    assert torch.equal(cache[3:6], torch.from_numpy(expected([3, 4, 5])))
    with pytest.raises(IndexError, match="index 23 out of range"):
        cache.gather([1, 23])


def test_cache_is_reused_without_calling_fill_again(tmp_path):
    open_image_cache(tmp_path / "c", 10, 4, NumberedImages(), shard_size=4, progress=False)
    again = open_image_cache(tmp_path / "c", 10, 4, NumberedImages(fail_from=0), shard_size=4, progress=False)
    assert np.array_equal(again.gather(range(10)), expected(list(range(10))))
    with pytest.raises(ValueError, match="holds 10 images of 4 px, asked for 11"):
        open_image_cache(tmp_path / "c", 11, 4, NumberedImages(), progress=False)


def test_cache_rejects_a_fill_of_the_wrong_shape_naming_the_folder(tmp_path):
    with pytest.raises(ValueError, match=r"c: fill returned uint8 \(2, 3, 4, 4\), expected uint8 \(2, 3, 5, 5\)"):
        open_image_cache(tmp_path / "c", 2, 5, NumberedImages(size=4), progress=False)


def test_killed_build_resumes_from_the_shards_already_written(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    with pytest.raises(RuntimeError, match="renderer crashed"):
        open_image_cache(tmp_path / "c", 12, 4, NumberedImages(log_dir=log, fail_from=9), shard_size=4, progress=False)
    assert sorted(p.name.split("-")[0] for p in log.iterdir()) == ["0", "4"]
    assert not (tmp_path / "c" / "manifest.json").exists() and not list((tmp_path / "c").glob("*.tmp"))
    cache = open_image_cache(tmp_path / "c", 12, 4, NumberedImages(log_dir=log), shard_size=4, progress=False)
    assert sorted(p.name.split("-")[0] for p in log.iterdir()) == ["0", "4", "8"]  # only the missing shard
    assert np.array_equal(cache.gather(range(12)), expected(list(range(12))))


def _open_in_child(folder, log, out_q):
    cache = open_image_cache(folder, 40, 4, NumberedImages(log_dir=log), shard_size=4, progress=False)
    out_q.put(cache.gather(range(40)).sum(dtype=np.int64).item())


def test_ten_processes_opening_one_cache_build_each_shard_once(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open_in_child, args=(tmp_path / "c", log, q)) for _ in range(10)]
    for p in procs:
        p.start()
    sums = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    want = int(expected(list(range(40))).sum(dtype=np.int64))
    assert sums == [want] * 10
    starts = sorted(int(p.name.split("-")[0]) for p in log.iterdir())
    assert starts == list(range(0, 40, 4))  # ten shards, each rendered exactly once


def test_parallel_fill_in_worker_processes_gives_the_same_shards(tmp_path):
    one = open_image_cache(tmp_path / "a", 30, 4, NumberedImages(), shard_size=16, progress=False)
    many = open_image_cache(tmp_path / "b", 30, 4, NumberedImages(), shard_size=16, workers=2, chunk=5, progress=False)
    assert np.array_equal(one.gather(range(30)), many.gather(range(30)))
    assert np.array_equal(one.column("label"), many.column("label"))


def test_augment_hand_checked_shift_with_edge_replication_and_mirror():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    draws = torch.tensor([[1], [-1], [0]])  # dy=+1 (content moves up), dx=-1 (content moves right)
    out = Augment.apply(x, draws)[0, 0]
    assert out.tolist() == [[4, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14], [12, 12, 13, 14]]
    mirrored = Augment.apply(x, torch.tensor([[0], [0], [1]]))[0, 0]
    assert mirrored.tolist() == [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8], [15, 14, 13, 12]]
    assert Augment().active is False and Augment(shift=0, mirror=True).active


def test_augment_draw_order_matches_the_trainers_historic_stream():
    # shifts y, shifts x, then mirror flags, all from the one CPU generator
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(-2, 3, (6,), generator=g)
    dx = torch.randint(-2, 3, (6,), generator=g)
    flip = (torch.rand(6, generator=g) < 0.5).long()
    assert torch.equal(Augment(2, True).draw(6, torch.Generator().manual_seed(5)), torch.stack([dy, dx, flip]))
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment_uint8(x, torch.Generator().manual_seed(5), 2, True),
                       Augment.apply(x, torch.stack([dy, dx, flip])))


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-loader-processes"])
def test_streamed_batches_equal_device_batches(tmp_path, workers):
    cache = open_image_cache(tmp_path / "c", 50, 4, NumberedImages(), shard_size=8, progress=False)
    labels = torch.arange(50) % 3
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    dev = list(DeviceBatches(cache, labels, "cpu").batches(order, 16))
    streamed = list(StreamedBatches(cache, labels, "cpu", workers=workers).batches(order, 16))
    assert [len(b[0]) for b in dev] == [16, 16, 16, 2]
    for (i1, x1, y1), (i2, x2, y2) in zip(dev, streamed, strict=True):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1, torch.from_numpy(expected(i1.tolist())))
        assert torch.equal(y1, i1 % 3)


def test_make_batches_placement_choices(tmp_path):
    cache = open_image_cache(tmp_path / "c", 5, 4, NumberedImages(), progress=False)
    assert make_batches(cache, None, "cpu").placement == "device"  # on CPU host memory is the device
    assert make_batches(cache, None, "cpu", placement="host").placement == "host"
    with pytest.raises(ValueError, match="placement must be auto, device or host"):
        make_batches(cache, None, "cpu", placement="gpu")


def test_torchvision_decoder_matches_pil_on_pngs(tiny_world):
    info = load_dataset(tiny_world)
    pil = load_split_uint8(info, "val", 32, progress=False, cache=False)
    tv = load_split_uint8(info, "val", 32, progress=False, cache=False, decoder="torchvision")
    assert torch.equal(pil, tv)  # native size: lossless PNG decoding, no resize
    pil24 = load_split_uint8(info, "val", 24, progress=False, cache=False).int()
    tv24 = load_split_uint8(info, "val", 24, progress=False, cache=False, decoder="torchvision").int()
    assert (pil24 - tv24).abs().float().mean() < 2.0  # two bilinear antialiased resizers: rounding-level differences


def test_split_cache_keys_on_decoder_and_size(tiny_world):
    info = load_dataset(tiny_world)
    a = open_split_cache(info, "val", 24, progress=False)
    b = open_split_cache(info, "val", 24, progress=False, decoder="torchvision")
    c = open_split_cache(info, "val", 20, progress=False)
    assert len({a.folder, b.folder, c.folder}) == 3
    assert isinstance(a, ImageCache) and a.meta["split"] == "val"


def _weights(run):
    return torch.load(Path(run) / "last.pt", weights_only=False)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_streamed_training_gives_the_same_weights_as_resident(tiny_world, tmp_path):
    base = dict(epochs=1, batch_size=32, seed=3, method="center-distance")
    Trainer(tiny_world, tmp_path / "dev", TrainConfig(**base, data_placement="device"), progress=False).fit()
    Trainer(tiny_world, tmp_path / "host", TrainConfig(**base, data_placement="host", workers=2), progress=False).fit()
    assert _same(_weights(tmp_path / "dev"), _weights(tmp_path / "host"))


def test_in_memory_data_trains_exactly_like_the_folder(tiny_world, tmp_path):
    info = load_dataset(tiny_world)
    mem = InMemoryData(info.classes, load_split_uint8(info, "train", 32, progress=False), info.labels("train"),
                       load_split_uint8(info, "val", 32, progress=False), info.labels("val"), name="tiny",
                       meta=info.meta)  # the folder's dataset.json: flip and shift
    cfg = dict(epochs=1, batch_size=32, seed=1)
    Trainer(tiny_world, tmp_path / "folder", TrainConfig(**cfg), progress=False).fit()
    trainer = Trainer(mem, tmp_path / "mem", TrainConfig(**cfg), progress=False)
    metrics = trainer.fit()
    assert _same(_weights(tmp_path / "folder"), _weights(tmp_path / "mem"))
    assert metrics["epochs"][0]["val_accuracy"] == pytest.approx(
        __import__("json").loads((tmp_path / "folder" / "metrics.json").read_text())["epochs"][0]["val_accuracy"])
    assert trainer._meta({})["dataset"]["root"] == "tiny"


def test_steps_per_epoch_fixes_the_rows_of_every_epoch(tiny_world, tmp_path):
    metrics = Trainer(tiny_world, tmp_path / "r", TrainConfig(epochs=2, batch_size=16, steps_per_epoch=11),
                      progress=False).fit()
    assert [e["train_rows"] for e in metrics["epochs"]] == [176, 176]  # 120 train rows, extended by a second draw
    short = Trainer(tiny_world, tmp_path / "s", TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2), progress=False).fit()
    assert short["epochs"][0]["train_rows"] == 32
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        TrainConfig(steps_per_epoch=0).check()
