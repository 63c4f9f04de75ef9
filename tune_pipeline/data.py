"""Datasets by name, decoded once into uint8 tensors, and the validation split.

`load_dataset` returns a `Dataset` of uint8 `(N, 3, H, W)` images and int64
labels on the CPU; the training loop moves it to the device once and slices
batches out of it.  Image folders are decoded in parallel and cached on disk,
keyed by the folder's file list, sizes and modification times, so the second
load of 60,000 JPEGs is a single file read.

The validation split is made here, once, where the data is decoded (in a
sweep, the driver; trials receive it through the object store): a fixed,
stratified part of the training set chosen by `val_seed` alone, so every
trial of a sweep, and a resumed sweep, holds out the same images.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tarfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tune_pipeline.config import DATASETS, EMBEDDED_DATASET, FOLDER_DATASET
from tune_pipeline.errors import UserError
from tune_pipeline.storage import cache_dir

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
CACHE_FORMAT = 2  # bump when the cached tensors' layout changes


class DataError(UserError):
    """A dataset that is missing or malformed: bad input, exit 2."""


@dataclass
class Dataset:
    name: str
    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, float, float]  # per channel, in [0, 1] units
    std: tuple[float, float, float]
    extra: dict = field(default_factory=dict)
    val_images: torch.Tensor | None = None  # held out of training to select on
    val_labels: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def limit(self, max_train: int = 0, max_test: int = 0) -> "Dataset":
        """A fixed random subset of N images per split (0 keeps all).  Random,
        not the first N: image folders are stored class by class, and the
        first 512 CIFAR images are all airplanes."""
        def cut(images, labels, n):
            if not n or n >= len(labels):
                return images, labels
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:n].sort().values
            return images[keep], labels[keep]
        train = cut(self.train_images, self.train_labels, max_train)
        test = cut(self.test_images, self.test_labels, max_test)
        val = (None, None) if self.val_labels is None else cut(self.val_images, self.val_labels, max_test)
        return Dataset(self.name, *train, *test, self.classes, self.mean, self.std, dict(self.extra), *val)

    def to_arrays(self) -> dict:
        """Numpy form for Ray's object store: the driver's `ray.put` copies it into
        the store once, and each trial on a node then reads that copy in place
        (`from_arrays`); a trial on a GPU copies it to its device."""
        return {
            "name": self.name, "classes": self.classes, "mean": self.mean, "std": self.std,
            "train_images": self.train_images.numpy(), "train_labels": self.train_labels.numpy(),
            "test_images": self.test_images.numpy(), "test_labels": self.test_labels.numpy(),
            "val_images": None if self.val_images is None else self.val_images.numpy(),
            "val_labels": None if self.val_labels is None else self.val_labels.numpy(),
            "extra": {k: v for k, v in self.extra.items() if k == "validation"},
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Dataset":
        def tensor(a):
            # Arrays from the object store are read-only views of its shared memory.
            # A run only reads its images (each batch is gathered into a new tensor),
            # so they stay there: no trial holds a private copy of the dataset
            # (CIFAR-10: 184 MB each, BENCHMARKS.md).  torch warns that it cannot
            # guard read-only memory against writes; nothing here writes to it.
            if a is None:
                return None
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(a)
        return cls(arrays["name"], tensor(arrays["train_images"]), tensor(arrays["train_labels"]),
                   tensor(arrays["test_images"]), tensor(arrays["test_labels"]),
                   list(arrays["classes"]), tuple(arrays["mean"]), tuple(arrays["std"]),
                   dict(arrays.get("extra") or {}),
                   tensor(arrays.get("val_images")), tensor(arrays.get("val_labels")))


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a validation part: `fraction` of each class (at least one
    image of every class that has two), drawn by `seed`, sorted.  It depends
    on the labels and the seed only, never on a trial's seed."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < 2:
            continue  # a class of one image stays in training
        n = min(max(1, round(fraction * len(members))), len(members) - 1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:n]])
    return torch.cat(chosen).sort().values if chosen else torch.empty(0, dtype=torch.long)


def with_validation(data: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with its validation part set: a folder's own val/ split
    when it has one, else a stratified `fraction` of the training set held
    out.  `fraction` 0 means no validation: a val/ split trains too."""
    if fraction <= 0:
        if data.val_labels is None:
            return data
        return Dataset(data.name, torch.cat([data.train_images, data.val_images]),
                       torch.cat([data.train_labels, data.val_labels]), data.test_images,
                       data.test_labels, data.classes, data.mean, data.std,
                       {**data.extra, "validation": "none (val/ trains)"})
    if data.val_labels is not None:
        if "validation" in data.extra:
            return data  # split already: this is idempotent
        return Dataset(data.name, data.train_images, data.train_labels, data.test_images, data.test_labels,
                       data.classes, data.mean, data.std, {**data.extra, "validation": "the val/ folder"},
                       data.val_images, data.val_labels)
    held = stratified_split(data.train_labels, fraction, seed)
    if len(held) == 0:
        raise DataError(f"{data.name}: too few training images per class for a validation split; "
                        f"set val_fraction: 0 to select on test data")
    keep = torch.ones(len(data.train_labels), dtype=torch.bool)
    keep[held] = False
    return Dataset(data.name, data.train_images[keep], data.train_labels[keep], data.test_images,
                   data.test_labels, data.classes, data.mean, data.std,
                   {**data.extra, "validation": f"{len(held)} training images (val_fraction {fraction:g}, "
                                                f"val_seed {seed})"},
                   data.train_images[held], data.train_labels[held])


def channel_stats(images: torch.Tensor) -> tuple[tuple, tuple]:
    x = images.float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a constant channel must not divide by 0
    return tuple(mean.tolist()), tuple(std.tolist())


# ---------------------------------------------------------------- digits

# UCI's "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak, 1998;
# CC BY 4.0) as scikit-learn ships it (BSD-3-Clause): 1,797 rows of 64 pixel
# values 0..16 and the label.  Shipped here rather than read through
# scikit-learn: importing sklearn cost 1.2-1.4 s of every quickstart and
# brought scipy into the install.
DIGITS_FILE = Path(__file__).resolve().parent / "datasets" / "digits.csv.gz"


def load_digits() -> Dataset:
    """The bundled 8x8 digits (1,797 images, no network), upscaled to 32x32
    RGB so every model sees the CIFAR shape; a fixed 80/20 split."""
    rows = np.loadtxt(DIGITS_FILE, delimiter=",", dtype=np.float64)
    pixels, target = rows[:, :-1], rows[:, -1].astype(np.int64)
    images = torch.from_numpy(pixels.reshape(-1, 8, 8)).float()[:, None]  # (N, 1, 8, 8), values 0..16
    images = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear",
                                             align_corners=False)
    images = (images * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = len(labels) // 5
    test, train = order[:n_test], order[n_test:]
    mean, std = channel_stats(images[train])
    return Dataset(EMBEDDED_DATASET, images[train], labels[train], images[test], labels[test],
                   [str(d) for d in range(10)], mean, std)


# ---------------------------------------------------------------- CIFAR

CIFAR = {  # keyed by config.CIFAR_DATASETS
    "cifar10": dict(
        folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
        meta="batches.meta", label_key="labels", names_key="label_names",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(
        folder="cifar-100-python", archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train=["train"], test=["test"],
        meta="meta", label_key="fine_labels", names_key="fine_label_names",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def _read_cifar_batches(folder: Path, names: list[str], label_key: str):
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def _fetch_cifar(name: str, data_dir: Path) -> None:
    spec = CIFAR[name]
    archive = data_dir / spec["archive"]
    try:
        if archive.exists():
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(data_dir, filter="data")
            return
        from torchvision.datasets.utils import download_and_extract_archive
        download_and_extract_archive(spec["url"], str(data_dir), filename=spec["archive"],
                                     md5=spec["md5"])
    except Exception as exc:  # URLError, OSError, a bad archive: all end the same way
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{name}: {data_dir / spec['folder']} is missing and fetching it failed ({reason}); "
            f"place {spec['archive']} ({spec['url']}) in {data_dir} and run again"
        ) from None


def load_cifar(name: str, data_dir: str | Path) -> Dataset:
    """CIFAR-10/100 from torchvision's on-disk layout (the pickled python
    batches), fetched into data_dir when absent."""
    spec = CIFAR[name]
    data_dir = Path(data_dir)
    folder = data_dir / spec["folder"]
    if not all((folder / f).exists() for f in spec["train"] + spec["test"]):
        _fetch_cifar(name, data_dir)
    try:
        train_x, train_y = _read_cifar_batches(folder, spec["train"], spec["label_key"])
        test_x, test_y = _read_cifar_batches(folder, spec["test"], spec["label_key"])
        with open(folder / spec["meta"], "rb") as f:
            classes = list(pickle.load(f, encoding="latin1")[spec["names_key"]])
    except (OSError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise DataError(f"{name}: {folder} is not a readable CIFAR folder ({exc})") from None
    return Dataset(name, train_x, train_y, test_x, test_y, classes, spec["mean"], spec["std"])


# ---------------------------------------------------------------- image folders

def _list_split(split_dir: Path) -> list[tuple[str, str]]:
    """(file path, class name) pairs, sorted; plain strings because 60,000
    Path objects cost seconds to build and sort."""
    items = []
    for class_entry in sorted((e for e in os.scandir(split_dir) if e.is_dir()), key=lambda e: e.name):
        files = sorted(e.path for e in os.scandir(class_entry.path)
                       if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        items.extend((f, class_entry.name) for f in files)
    return items


def _fingerprint(root: Path, files: list[str], image_size: int) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT} {image_size}\n".encode())
    prefix = len(str(root)) + 1
    for path in files:
        st = os.stat(path)
        digest.update(f"{path[prefix:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _resize(image: torch.Tensor, image_size: int) -> torch.Tensor:
    if image.shape[1:] == (image_size, image_size):
        return image
    return torch.nn.functional.interpolate(
        image[None].float(), size=(image_size, image_size), mode="bilinear",
        antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)


def _decode_one(path: str) -> torch.Tensor:
    from PIL import Image
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def _decode_chunk(paths: list[str], out: torch.Tensor, image_size: int) -> None:
    """JPEGs go to torchvision's batched decoder (one call, GIL released);
    anything else, or a JPEG it rejects, through PIL."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    raw = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        raw.append(torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else None)
    jpeg = [i for i, p in enumerate(paths) if p.lower().endswith((".jpg", ".jpeg")) and raw[i] is not None]
    decoded: dict[int, torch.Tensor] = {}
    if jpeg:
        try:
            with warnings.catch_warnings():
                # torchvision 0.29 announces a move of its decoders to torchcodec; they still work.
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = dict(zip(jpeg, decode_jpeg([raw[i] for i in jpeg], mode=ImageReadMode.RGB)))
        except RuntimeError:
            decoded = {}  # one bad file fails the batch; decode them one by one below
    bad = []
    for i, path in enumerate(paths):
        image = decoded.get(i)
        if image is None:
            try:
                image = _decode_one(path)
            except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... per format
                bad.append((i, f"{path}: {type(exc).__name__}: {str(exc) or 'cannot decode'}"))
                continue
        out[i] = _resize(image, image_size)
    return bad


def _decode_all(paths: list[str], image_size: int, chunk: int = 1024) -> tuple[torch.Tensor, list]:
    """The decoded images, and (index, "path: reason") for each file that did not decode."""
    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    starts = list(range(0, len(paths), chunk))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda s: _decode_chunk(paths[s:s + chunk], out[s:s + chunk], image_size),
                                starts))
    bad = [(s + i, reason) for s, chunk_bad in zip(starts, results) for i, reason in chunk_bad]
    return out, bad


def warn(message: str) -> None:
    """A data problem that does not stop the run, said once on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _check_classes(root: Path, test_dir: Path, train_items, test_items) -> list[str]:
    classes = sorted({c for _, c in train_items})
    if len(classes) < 2:
        found = f"one class ({classes[0]!r})" if classes else "no class"
        raise DataError(f"imagefolder: {root / 'train'} has {found}; a classifier needs at least 2 "
                        f"class folders (is data_dir one level too deep?)")
    unknown = sorted({c for _, c in test_items} - set(classes))
    if unknown:
        raise DataError(f"imagefolder: {test_dir} has classes not in train/: {', '.join(unknown)}")
    untested = sorted(set(classes) - {c for _, c in test_items})
    if untested:
        warn(f"imagefolder: {test_dir} has no images of {', '.join(untested)}; "
             f"test accuracy says nothing about them")
    return classes


def load_imagefolder(root: str | Path, image_size: int = 32, skip_bad_images: bool = False) -> Dataset:
    """ROOT/train/<class>/* and ROOT/test/<class>/*, with ROOT/val/<class>/*
    as the validation split when both test/ and val/ exist (a folder with
    train/ and val/ only tests on val/, as ImageNet's layout means).  A file
    that does not decode is an error naming it, or, with `skip_bad_images`,
    left out and counted in a warning."""
    root = Path(root)
    if not root.exists():
        # A relative data_dir found nowhere resolves to the working directory:
        # say so, rather than name that fallback as if it had been asked for.
        raise DataError(f"imagefolder: data_dir {root} does not exist (a relative data_dir is looked "
                        f"for beside the YAML file, in the working directory, then in the project)")
    train_dir = root / "train"
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"imagefolder: {root} needs train/<class>/ and test/<class>/ "
                        f"(or val/<class>/) folders of images")
    val_dir = root / "val" if test_dir.name == "test" and (root / "val").is_dir() else None
    train_items, test_items = _list_split(train_dir), _list_split(test_dir)
    val_items = _list_split(val_dir) if val_dir is not None else []
    if not train_items or not test_items or (val_dir is not None and not val_items):
        empty = train_dir if not train_items else test_dir if not test_items else val_dir
        raise DataError(f"imagefolder: no images found under {empty}")
    classes = _check_classes(root, test_dir, train_items, test_items)
    unknown = sorted({c for _, c in val_items} - set(classes))
    if unknown:
        raise DataError(f"imagefolder: {val_dir} has classes not in train/: {', '.join(unknown)}")
    files = [p for p, _ in train_items + test_items + val_items]
    key = f"{image_size} skip" if skip_bad_images else image_size
    cache_file = cache_dir() / f"imagefolder-{_fingerprint(root, files, key)}.pt"
    extra = {"cache_file": str(cache_file)}

    def dataset(payload: dict) -> Dataset:
        return Dataset(FOLDER_DATASET, payload["train_images"], payload["train_labels"],
                       payload["test_images"], payload["test_labels"], classes,
                       tuple(payload["mean"]), tuple(payload["std"]), extra,
                       payload.get("val_images"), payload.get("val_labels"))

    if cache_file.exists():
        try:
            cached = torch.load(cache_file, weights_only=True)
            extra["cache_hit"] = True
            return dataset(cached)
        except Exception:
            pass  # a truncated cache file is rebuilt below
    index = {c: i for i, c in enumerate(classes)}
    try:
        images, bad = _decode_all(files, image_size)
    except OSError as exc:
        raise DataError(f"imagefolder: cannot read {exc.filename or root} ({exc.strerror or exc})") from None
    labels = torch.tensor([index[c] for _, c in train_items + test_items + val_items], dtype=torch.long)
    split_of = torch.tensor([0] * len(train_items) + [1] * len(test_items) + [2] * len(val_items))
    if bad and not skip_bad_images:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"imagefolder: cannot decode {bad[0][1]}{more}; remove the file(s) or set "
                        f"skip_bad_images: true")
    if bad:
        keep = torch.ones(len(files), dtype=torch.bool)
        keep[[i for i, _ in bad]] = False
        images, labels, split_of = images[keep], labels[keep], split_of[keep]
        warn(f"imagefolder: skipped {len(bad)} of {len(files)} files that do not decode "
             f"(skip_bad_images), first {bad[0][1]}")
        for split, folder in ((0, train_dir), (1, test_dir), (2, val_dir)):
            if folder is not None and not bool((split_of == split).any()):
                raise DataError(f"imagefolder: no decodable images left in {folder}")
    n_train, n_test = int((split_of == 0).sum()), int((split_of == 1).sum())
    mean, std = channel_stats(images[:n_train])
    payload = {"train_images": images[:n_train].clone(), "train_labels": labels[:n_train].clone(),
               "test_images": images[n_train:n_train + n_test].clone(),
               "test_labels": labels[n_train:n_train + n_test].clone(),
               "mean": list(mean), "std": list(std)}
    if val_items:
        payload.update(val_images=images[n_train + n_test:].clone(),
                       val_labels=labels[n_train + n_test:].clone())
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        torch.save(payload, tmp)
        tmp.replace(cache_file)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # a read-only cache dir costs speed, not correctness
    extra["cache_hit"] = False
    return dataset(payload)


def load_dataset(name: str, data_dir: str | Path = "data", image_size: int = 32,
                 skip_bad_images: bool = False) -> Dataset:
    if name == EMBEDDED_DATASET:
        return load_digits()
    if name in CIFAR:
        return load_cifar(name, data_dir)
    if name == FOLDER_DATASET:
        return load_imagefolder(data_dir, image_size, skip_bad_images)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


# The training keys that decide the data (and its validation split) a trial sees.
DATA_KEYS = ("dataset", "data_dir", "image_size", "skip_bad_images", "val_fraction", "val_seed")


def dataset_key(config: dict) -> tuple:
    """What identifies the data a config trains on; equal keys share one load."""
    name = config["dataset"]
    split = (config["val_fraction"], config["val_seed"]) if config["val_fraction"] > 0 else (0,)
    if name == EMBEDDED_DATASET:
        return (name, *split)
    if name == FOLDER_DATASET:
        return (name, config["data_dir"], config["image_size"], config.get("skip_bad_images", False), *split)
    return (name, config["data_dir"], *split)


def load_for_config(config: dict) -> Dataset:
    """The config's data with its validation split made: the one place a split is decided."""
    data = load_dataset(config["dataset"], config["data_dir"], config["image_size"],
                        config.get("skip_bad_images", False))
    return with_validation(data, config["val_fraction"], config["val_seed"])
