"""Dataset folders: the Argus format and ImageFolder trees (+ optional `domains.csv`).

Argus format: `samples.csv` (`sample_id,path,label,domain,split`, extra columns kept) with paths
relative to the folder. ImageFolder: one sub-folder per class; an optional `domains.csv`
(`path,domain`, paths relative to the root) gives domains. An ImageFolder tree has no split, so
`load_dataset` makes a deterministic split stratified by (label, domain) and records it in the
sidecar `argus_split.csv` (or, when the folder is read-only, under `~/.cache/argus/splits/`), so
every command sees the same split.

Training code reads only `sample_id, path, label, split`; the `domain` column is for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
REQUIRED_COLUMNS = ("sample_id", "path", "label", "split")
SPLITS = ("train", "val", "test")
SPLIT_SIDECAR = "argus_split.csv"
UNKNOWN_DOMAIN = "unknown"
DATASET_META = "dataset.json"  # optional: what the data allows, e.g. {"augment": ["flip", "shift"]}
AUGMENTATIONS = ("flip", "shift")


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the file/row and the problem."""


@dataclass
class DatasetInfo:
    """A loaded dataset: `root`, `table` (one row per sample), sorted `classes`, `kind`."""

    root: Path
    table: pd.DataFrame
    classes: list[str]
    kind: str = "argus"  # "argus" | "imagefolder"
    split_file: Path | None = None
    warnings: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # the folder's dataset.json (empty if none)

    @property
    def class_to_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def split_table(self, split: str) -> pd.DataFrame:
        """Rows of one split, index reset (row position = the `index` ImageDataset yields)."""
        if split not in SPLITS:
            raise DatasetError(f"{self.root}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self.table[self.table["split"] == split].reset_index(drop=True)

    def labels(self, split: str) -> torch.Tensor:
        """Class indices `[N]` int64 of one split (never reads the domain column)."""
        c2i = self.class_to_index
        return torch.tensor([c2i[v] for v in self.split_table(split)["label"]], dtype=torch.long)

    def paths(self, split: str) -> list[Path]:
        return [self.root / p for p in self.split_table(split)["path"]]

    def domains(self, split: str) -> list[str]:
        """Domain names of one split (`"unknown"` where empty). For evaluation only."""
        col = self.split_table(split).get("domain")
        if col is None:
            return [UNKNOWN_DOMAIN] * int((self.table["split"] == split).sum())
        return [d if isinstance(d, str) and d.strip() else UNKNOWN_DOMAIN for d in col.fillna("")]

    @property
    def native_image_size(self) -> int:
        """The size the images were made at: `parts.json["image_size"]` for a toy world, else 64."""
        try:
            return int(read_parts(self.root)["image_size"])
        except (FileNotFoundError, KeyError, TypeError, ValueError):
            return 64

    def fingerprint(self, split: str) -> str:
        """Hash of a split's paths and labels (not domains): keys the decoded-image cache."""
        t = self.split_table(split)
        h = hashlib.sha1()
        for p, l in zip(t["path"], t["label"]):
            h.update(f"{p}\t{l}\n".encode())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- loading

def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: not a valid CSV file ({exc})") from None


def _validate_table(table: pd.DataFrame, source: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)})")
    for col in ("sample_id", "path", "label"):
        empty = table.index[table[col].str.strip() == ""].tolist()
        if empty:
            row = empty[0] + 2  # header is line 1
            what = "unknown label (empty)" if col == "label" else f"empty {col}"
            raise DatasetError(f"{source}: line {row}: {what}")
    bad = table.index[~table["split"].isin(SPLITS)].tolist()
    if bad:
        r = bad[0]
        raise DatasetError(f"{source}: line {r + 2}: split {table.at[r, 'split']!r} is not one of {', '.join(SPLITS)}")
    dup = table["sample_id"].duplicated(keep="first")
    if dup.any():
        r = int(np.flatnonzero(dup.values)[0])
        first = int(np.flatnonzero((table["sample_id"] == table.at[r, "sample_id"]).values)[0])
        raise DatasetError(f"{source}: line {r + 2}: duplicate sample id {table.at[r, 'sample_id']!r} (first on line {first + 2})")
    train_labels = set(table.loc[table["split"] == "train", "label"])
    if train_labels:
        unknown = table.index[~table["label"].isin(train_labels)].tolist()
        if unknown:
            r = unknown[0]
            raise DatasetError(f"{source}: line {r + 2}: unknown label {table.at[r, 'label']!r} (no training sample has it; sample {table.at[r, 'sample_id']!r})")


def parse_augment(value, source: str = "--augment") -> tuple[str, ...]:
    """`"flip,shift"`, `["shift"]`, `"none"` or `[]` -> a sorted tuple of augmentation names.

    Names: `flip` (horizontal mirroring: only for data whose classes are mirror-symmetric, never
    for digits or text) and `shift` (random translations of a few pixels)."""
    if isinstance(value, str):
        items = [] if value.strip().lower() in ("", "none") else [v.strip().lower() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip().lower() for v in value]
    else:
        raise DatasetError(f"{source}: augment must be a list or a comma-separated string, got {value!r}")
    unknown = sorted(set(items) - set(AUGMENTATIONS))
    if unknown:
        raise DatasetError(f"{source}: unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)} or none")
    return tuple(sorted(set(items)))


def read_dataset_meta(root) -> dict:
    """The folder's optional `dataset.json` (validated; `augment` normalised to a tuple), or {}."""
    path = Path(root) / DATASET_META
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if "augment" in meta:
        meta["augment"] = parse_augment(meta["augment"], f"{path}: field 'augment'")
    return meta


def write_dataset_meta(root, **fields) -> Path:
    """Write (or update) the folder's `dataset.json`; `augment` is checked by `parse_augment`."""
    path = Path(root) / DATASET_META
    meta = json.loads(path.read_text()) if path.exists() else {}
    if "augment" in fields:
        fields["augment"] = list(parse_augment(fields["augment"], f"{path}: field 'augment'"))
    meta.update(fields)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _declared_classes(root: Path) -> list[str] | None:
    """Classes declared by the folder (`classes.txt` or toy-world `parts.json`), if any."""
    if (root / "classes.txt").exists():
        return [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
    if (root / "parts.json").exists():
        try:
            return [c["name"] for c in read_parts(root)["classes"]]
        except (KeyError, TypeError, DatasetError):
            return None
    return None


def _load_argus(root: Path) -> DatasetInfo:
    source = root / "samples.csv"
    table = read_samples_table(root)
    _validate_table(table, source)
    if "domain" not in table.columns:
        table["domain"] = ""
    classes = sorted(set(table["label"]))
    declared = _declared_classes(root)
    if declared is not None:
        unknown = table.index[~table["label"].isin(declared)].tolist()
        if unknown:
            r = unknown[0]
            raise DatasetError(f"{source}: line {r + 2}: unknown label {table.at[r, 'label']!r} (declared classes: {', '.join(declared)})")
        empty = [c for c in declared if c not in set(table.loc[table['split'] == 'train', 'label'])]
        if empty and (table["split"] == "train").any():
            raise DatasetError(f"{source}: empty class {empty[0]!r}: declared but has no training samples")
        classes = sorted(declared)
    return DatasetInfo(root=root, table=table, classes=classes, kind="argus")


def _scan_imagefolder(root: Path) -> tuple[pd.DataFrame, list[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root}: no samples.csv and no class sub-folders: not an Argus dataset or ImageFolder tree")
    rows = []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetError(f"{d}: empty class {d.name!r}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for p in files:
            rel = p.relative_to(root).as_posix()
            rows.append((rel, d.name))
    table = pd.DataFrame(rows, columns=["path", "label"])
    table.insert(0, "sample_id", [os.path.splitext(p)[0].replace("/", "__") for p in table["path"]])
    dup = table["sample_id"].duplicated()
    if dup.any():
        r = int(np.flatnonzero(dup.values)[0])
        raise DatasetError(f"{root / table.at[r, 'path']}: duplicate sample id {table.at[r, 'sample_id']!r} (two files differ only by extension)")
    return table, [d.name for d in class_dirs]


def _read_domains_csv(root: Path, known_paths: set[str]) -> dict[str, str]:
    path = root / "domains.csv"
    if not path.exists():
        return {}
    table = _read_csv(path)
    for col in ("path", "domain"):
        if col not in table.columns:
            raise DatasetError(f"{path}: missing column {col!r} (need path,domain)")
    out = {}
    for i, (p, d) in enumerate(zip(table["path"], table["domain"])):
        p = p.strip().replace("\\", "/")
        if p not in known_paths:
            where = "missing file" if not (root / p).exists() else "not an image of a class folder"
            raise DatasetError(f"{path}: line {i + 2}: {where}: {p!r}")
        if p in out:
            raise DatasetError(f"{path}: line {i + 2}: duplicate path {p!r}")
        out[p] = d.strip()
    return out


def make_split(table: pd.DataFrame, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> pd.Series:
    """Deterministic split stratified by (label, domain): each stratum is shuffled with the seed
    and cut by the fractions (at least one training sample per stratum)."""
    split = pd.Series("train", index=table.index)
    keys = table["label"] + "\x00" + table.get("domain", pd.Series("", index=table.index)).fillna("")
    for key in sorted(set(keys)):
        idx = table.index[keys == key].to_numpy()
        digest = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
        idx = idx[np.random.default_rng(digest).permutation(len(idx))]
        n = len(idx)
        n_test = int(round(n * test_fraction)) if n >= 3 else 0
        n_val = int(round(n * val_fraction)) if n >= 3 else 0
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        split[idx[:n_test]] = "test"
        split[idx[n_test:n_test + n_val]] = "val"
    return split


def _sidecar_path(root: Path) -> Path:
    if os.access(root, os.W_OK):
        return root / SPLIT_SIDECAR
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(os.environ.get("ARGUS_CACHE", Path.home() / ".cache" / "argus")) / "splits" / f"{key}.csv"


def _write_split(sidecar: Path, table: pd.DataFrame) -> None:
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    table[["sample_id", "path", "label", "domain", "split"]].to_csv(sidecar, index=False, lineterminator="\n")


def record_split(root, splits: dict[str, str]) -> Path:
    """Record a chosen split of an ImageFolder tree (`path -> train|val|test` for every image),
    as `load_dataset` does for the split it makes itself; returns the sidecar path. For dataset
    builders whose test split is designed (e.g. every test image rendered in every domain)."""
    root = Path(root)
    table, _ = _scan_imagefolder(root)
    domains = _read_domains_csv(root, set(table["path"]))
    table["domain"] = [domains.get(p, "") for p in table["path"]]
    missing = sorted(set(table["path"]) - set(splits))
    if missing:
        raise DatasetError(f"{root}: no split given for {missing[0]!r}")
    table["split"] = [splits[p] for p in table["path"]]
    _validate_table(table.astype({"split": str}), root / SPLIT_SIDECAR)
    sidecar = _sidecar_path(root)
    _write_split(sidecar, table)
    return sidecar


def _load_imagefolder(root: Path, seed: int, val_fraction: float, test_fraction: float) -> DatasetInfo:
    table, classes = _scan_imagefolder(root)
    domains = _read_domains_csv(root, set(table["path"]))
    table["domain"] = [domains.get(p, "") for p in table["path"]]
    sidecar = _sidecar_path(root)
    notes = []
    if sidecar.exists():
        recorded = _read_csv(sidecar)
        _validate_table(recorded, sidecar)
        missing = sorted(set(recorded["path"]) - set(table["path"]))
        if missing:
            raise DatasetError(f"{sidecar}: missing file {missing[0]!r} listed in the recorded split (delete {sidecar.name} to re-split)")
        split_of = dict(zip(recorded["path"], recorded["split"]))
        new = int((~table["path"].isin(split_of.keys())).sum())
        if new:
            notes.append(f"{new} image(s) added after the split was recorded in {sidecar} are ignored (delete it to re-split)")
            warnings.warn(notes[-1])
            table = table[table["path"].isin(split_of.keys())].reset_index(drop=True)
        table["split"] = [split_of[p] for p in table["path"]]
    else:
        table["split"] = make_split(table, seed, val_fraction, test_fraction)
        _write_split(sidecar, table)
    table = table[["sample_id", "path", "label", "domain", "split"]]
    return DatasetInfo(root=root, table=table, classes=sorted(classes), kind="imagefolder", split_file=sidecar, warnings=notes)


def load_dataset(root, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> DatasetInfo:
    """Load a dataset folder: Argus format if it has `samples.csv`, else an ImageFolder tree.

    For ImageFolder trees the split (seed, fractions) is made once and recorded in the sidecar;
    later loads reuse it. The optional `dataset.json` lands in `.meta` (e.g. `augment`: which
    augmentations suit the data). Raises `DatasetError` naming the file/line and the problem.
    Image files are not opened here (see `check_dataset`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    meta = read_dataset_meta(root)
    if (root / "samples.csv").exists():
        info = _load_argus(root)
    else:
        info = _load_imagefolder(root, seed, val_fraction, test_fraction)
    info.meta = meta
    return info


# ----------------------------------------------------------------------------- toy-world extras

def read_samples_table(root, missing_ok: bool = False) -> pd.DataFrame | None:
    """`samples.csv` as text columns (empty cells stay ""), not validated (`load_dataset` does
    that); None when it is missing and `missing_ok`."""
    path = Path(root) / "samples.csv"
    if not path.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"{path}: no samples.csv (is {root} a dataset folder?)")
    return _read_csv(path)


def read_parts(root, missing_ok: bool = False) -> dict | None:
    """`parts.json` of a toy-world folder (docs/contracts.md); None when it is missing and `missing_ok`."""
    path = Path(root) / "parts.json"
    if not path.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"{path}: no parts.json (is {root} a toy-world folder?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def read_part_mask(root, sample_id: str, missing_ok: bool = False) -> np.ndarray | None:
    """The part label map `np.uint8 [H, W]` of one sample (0 = background, v = part id v, from
    `masks/<sample_id>.png`); None when it is missing and `missing_ok`."""
    path = Path(root) / "masks" / f"{sample_id}.png"
    if not path.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"{path}: no mask for sample {sample_id!r}")
    with Image.open(path) as im:
        return np.array(im.convert("L"), dtype=np.uint8)


def has_part_masks(root) -> bool:
    """True when the folder has the toy world's `parts.json` and `masks/`."""
    return (Path(root) / "parts.json").is_file() and (Path(root) / "masks").is_dir()



# ----------------------------------------------------------------------------- images

def read_image(path: Path, image_size: int | None = None, modes: set | None = None) -> np.ndarray:
    """Decode one image as RGB uint8 `[H, W, 3]` (resized bilinearly to `image_size`² if given);
    the original mode is added to `modes` when a set is given."""
    try:
        with Image.open(path) as im:
            if modes is not None:
                modes.add(im.mode)
            im = im.convert("RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


class _DecodeFiles:
    """Picklable cache filler: decode `paths[start:stop]` with PIL (RGB, bilinear resize)."""

    def __init__(self, paths: list[str], image_size: int):
        self.paths, self.image_size = paths, int(image_size)

    def __call__(self, start: int, stop: int):
        modes = []
        arrays = []
        for p in self.paths[start:stop]:
            m: set = set()
            arrays.append(read_image(Path(p), self.image_size, m))
            modes.append(next(iter(m)))
        images = np.stack(arrays).transpose(0, 3, 1, 2) if arrays else np.zeros((0, 3, self.image_size, self.image_size), np.uint8)
        return np.ascontiguousarray(images), {"mode": np.asarray(modes, dtype="<U8")}


class _DecodeFilesTorchvision(_DecodeFiles):
    """Cache filler decoding with torchvision.io: JPEG with `decode_jpeg(device=...)` (batched;
    on the GPU for `decoder="gpu"`), other formats with `decode_image` on the CPU; resizing
    (bilinear, antialiased) on the same device. Pixels can differ from PIL's by rounding after a
    resize or by the JPEG decoder, so the decoder is part of the cache key."""

    device = "cpu"

    def __call__(self, start: int, stop: int):
        with warnings.catch_warnings():  # torchvision 0.29 marks torchvision.io as superseded by TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._decode(start, stop)

    def _decode(self, start: int, stop: int):
        import torch.nn.functional as F
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("decoder 'gpu' needs a CUDA device (use decoder 'torchvision' or 'pil')")
        paths = self.paths[start:stop]
        raw = []
        for p in paths:
            try:
                raw.append(read_file(p))
            except RuntimeError:
                raise DatasetError(f"{p}: missing file") from None
        is_jpeg = [p.lower().endswith((".jpg", ".jpeg")) for p in paths]
        decoded: list = [None] * len(paths)
        jpeg_pos = [i for i, j in enumerate(is_jpeg) if j]
        if jpeg_pos:
            try:
                out = decode_jpeg([raw[i] for i in jpeg_pos], mode=ImageReadMode.RGB, device=device)
            except RuntimeError as exc:
                raise DatasetError(f"{paths[jpeg_pos[0]]}..: unreadable JPEG in this batch ({exc})") from None
            for i, img in zip(jpeg_pos, out):
                decoded[i] = img
        for i, j in enumerate(is_jpeg):
            if not j:
                try:
                    decoded[i] = decode_image(raw[i], mode=ImageReadMode.RGB).to(device)
                except RuntimeError as exc:
                    raise DatasetError(f"{paths[i]}: unreadable image ({exc})") from None
        s = self.image_size
        images = torch.empty((len(paths), 3, s, s), dtype=torch.uint8, device=device)
        for i, img in enumerate(decoded):
            if img.shape[1:] != (s, s):
                img = F.interpolate(img[None].float(), size=(s, s), mode="bilinear", antialias=True,
                                    align_corners=False)[0].round_().clamp_(0, 255).to(torch.uint8)
            images[i] = img
        return images.cpu().numpy(), {"mode": np.asarray(["RGB"] * len(paths), dtype="<U8")}


class _DecodeFilesGPU(_DecodeFilesTorchvision):
    device = "cuda"


DECODERS = {"pil": _DecodeFiles, "torchvision": _DecodeFilesTorchvision, "gpu": _DecodeFilesGPU}


def _cache_dir(info: DatasetInfo) -> Path:
    local = info.root / ".argus_cache"
    if os.access(info.root, os.W_OK):
        return local
    from training.image_cache import cache_root

    return cache_root() / hashlib.sha1(str(info.root.resolve()).encode()).hexdigest()[:16]


def open_split_cache(info: DatasetInfo, split: str, image_size: int, workers: int = 0, progress: bool = True,
                     decoder: str = "pil"):
    """The split's images decoded once into a memory-mapped uint8 `ImageCache` (`[N, 3, S, S]`).

    Kept in `<root>/.argus_cache/<split>-<S>px-<key>/` (or under `$ARGUS_CACHE` for read-only
    folders), keyed by the split's paths and labels, the size and the decoder, so every later run
    and every concurrent process reuses it. `workers` > 1 decodes in parallel processes;
    `decoder="torchvision"` decodes with torchvision.io on the CPU, `decoder="gpu"` decodes JPEGs
    and resizes on the GPU (torchvision.io).
    """
    from training.image_cache import cache_key, open_image_cache

    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    paths = [str(p) for p in info.paths(split)]
    key = cache_key(fingerprint=info.fingerprint(split), n=len(paths), size=image_size, decoder=decoder)
    folder = _cache_dir(info) / f"{split}-{image_size}px-{key}"
    fresh = not (folder / "manifest.json").exists()
    cache = open_image_cache(folder, len(paths), image_size, DECODERS[decoder](paths, image_size),
                             workers=workers if decoder != "gpu" else 0, progress=progress, desc=f"decode {split}",
                             meta={"root": str(info.root), "split": split, "decoder": decoder})
    if fresh and len(cache):
        modes = sorted(set(cache.column("mode").tolist()))
        if len(modes) > 1:
            warnings.warn(f"{info.root}: split {split!r} mixes image modes {', '.join(modes)}: all converted to RGB")
    return cache


def load_split_uint8(info: DatasetInfo, split: str, image_size: int, workers: int = 0, progress: bool = True,
                     cache: bool = True, decoder: str = "pil") -> torch.Tensor:
    """All images of a split decoded once: uint8 `[N, 3, S, S]` (RGB, resized to `image_size`)
    in host memory. With `cache` (default) through `open_split_cache`; otherwise decoded now and
    nothing is written."""
    if cache:
        try:
            return open_split_cache(info, split, image_size, workers, progress, decoder).to_tensor()
        except OSError:
            pass  # a read-only place just means no cache
    paths = [str(p) for p in info.paths(split)]
    images, cols = DECODERS[decoder](paths, image_size)(0, len(paths))
    modes = sorted(set(cols["mode"].tolist()))
    if len(modes) > 1:
        warnings.warn(f"{info.root}: split {split!r} mixes image modes {', '.join(modes)}: all converted to RGB")
    return torch.from_numpy(images)


_NORM_CONSTANTS: dict = {}


def _norm_constants(mean, std, device: torch.device):
    # made once per (mean, std, device): a fresh host->GPU copy per batch would block the host
    key = (tuple(float(m) for m in mean), tuple(float(s) for s in std), str(device))
    if key not in _NORM_CONSTANTS:
        if len(_NORM_CONSTANTS) > 64:
            _NORM_CONSTANTS.clear()
        _NORM_CONSTANTS[key] = (torch.tensor(key[0], dtype=torch.float32, device=device).view(1, -1, 1, 1),
                                torch.tensor(key[1], dtype=torch.float32, device=device).view(1, -1, 1, 1))
    return _NORM_CONSTANTS[key]


def normalize_uint8(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 `[B, 3, H, W]` -> float32 normalised `(x/255 - mean) / std`."""
    mean_t, std_t = _norm_constants(mean, std, batch.device)
    return (batch.float().div_(255.0) - mean_t) / std_t


class ImageDataset(torch.utils.data.Dataset):
    """One split as a torch Dataset of `(image [3, S, S] float32 normalised, label int, index int)`.

    Any size and mode is converted to RGB `image_size`². `index` is the row position in
    `info.split_table(split)`. With `cache=True` the whole split is decoded once into memory
    (see `load_split_uint8`); otherwise each item is read from disk.
    """

    def __init__(self, info: DatasetInfo, split: str, image_size: int = 64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), cache: bool = False):
        self.info = info
        self.split = split
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.paths = info.paths(split)
        self.targets = info.labels(split)
        self._images = load_split_uint8(info, split, self.image_size, progress=False) if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def uint8(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        return torch.from_numpy(read_image(self.paths[index], self.image_size).transpose(2, 0, 1).copy())

    def __getitem__(self, index: int):
        x = normalize_uint8(self.uint8(index)[None], self.mean, self.std)[0]
        return x, int(self.targets[index]), int(index)


# ----------------------------------------------------------------------------- check

@dataclass
class CheckReport:
    """What `argus data check` found: errors (fatal), warnings, and counts classes x domains."""

    root: Path
    kind: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    modes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"dataset {self.root} ({self.kind or 'unreadable'})"]
        lines += [f"ERROR   {e}" for e in self.errors]
        lines += [f"WARNING {w}" for w in self.warnings]
        if self.summary is not None:
            lines.append("")
            lines.append(self.summary.to_string())
            if self.modes:
                lines.append("")
                lines.append("image modes: " + ", ".join(f"{m}={n}" for m, n in sorted(self.modes.items())))
                lines.append("image sizes: " + ", ".join(f"{s}={n}" for s, n in sorted(self.sizes.items(), key=lambda kv: -kv[1])[:5]))
        return "\n".join(lines)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Counts with classes as rows and `split/domain` as columns, plus totals."""
    t = table.copy()
    t["domain"] = [d if d else UNKNOWN_DOMAIN for d in t.get("domain", pd.Series("", index=t.index)).fillna("")]
    t["column"] = t["split"] + "/" + t["domain"]
    counts = pd.crosstab(t["label"], t["column"], margins=True, margins_name="total")
    counts.index.name = "class"
    counts.columns.name = None
    return counts


def check_dataset(root, max_errors: int = 50, open_images: bool = True) -> CheckReport:
    """Check a dataset folder thoroughly: structure (via `load_dataset`), then every image.

    Errors: missing file, unreadable image, unknown label, duplicate sample id, empty class, bad
    split / columns. Warnings: mixed image modes (they are converted to RGB when loaded), splits
    without samples. The summary counts classes x (split/domain).
    """
    report = CheckReport(root=Path(root))
    try:
        info = load_dataset(root)
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    report.kind = info.kind
    report.warnings += info.warnings
    if open_images:
        for rel, sid in zip(info.table["path"], info.table["sample_id"]):
            path = info.root / rel
            if not path.exists():
                report.errors.append(f"{path}: missing file (sample {sid!r})")
            else:
                try:
                    with Image.open(path) as im:
                        im.verify()
                    with Image.open(path) as im:
                        report.modes[im.mode] = report.modes.get(im.mode, 0) + 1
                        key = f"{im.size[0]}x{im.size[1]}"
                        report.sizes[key] = report.sizes.get(key, 0) + 1
                except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                    report.errors.append(f"{path}: unreadable image (sample {sid!r}: {exc})")
            if len(report.errors) >= max_errors:
                report.errors.append(f"... stopped after {max_errors} errors")
                break
        if len(report.modes) > 1:
            report.warnings.append("mixed image modes " + ", ".join(f"{m} ({n})" for m, n in sorted(report.modes.items())) + ": all images are converted to RGB when loaded")
    for split in SPLITS:
        if not (info.table["split"] == split).any():
            report.warnings.append(f"split {split!r} has no samples")
    report.summary = summary_table(info.table)
    return report
