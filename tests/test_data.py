import hashlib
import json
import shutil
import subprocess
import sys
import urllib.error

import pytest
import torch

from tune_pipeline import data
from tune_pipeline.data import DataError, load_dataset
from tune_pipeline.train import batches

from conftest import write_cifar, write_image_folder


def check_dataset(ds, n_classes):
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        assert labels.dtype == torch.long and len(labels) == len(images)
        assert 0 <= labels.min() and labels.max() < n_classes
    assert ds.num_classes == n_classes
    assert len(ds.mean) == len(ds.std) == 3 and all(s > 0 for s in ds.std)


def test_embedded_digits_need_no_files():
    ds = load_dataset("digits")
    check_dataset(ds, 10)
    assert ds.train_images.shape == (1438, 3, 32, 32) and ds.test_images.shape == (359, 3, 32, 32)
    assert ds.train_images.float().std() > 10  # real pictures, not a constant


# scikit-learn's digits.csv.gz, byte for byte (checked against scikit-learn 1.9.1).
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def test_digits_come_from_the_package_not_scikit_learn():
    # The quickstart's data ships inside the package: no scikit-learn install
    # (nor its 1.2 s import) on the way to a user's first sweep.
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "from tune_pipeline.data import load_dataset\n"
            "ds = load_dataset('digits')\n"
            "print(len(ds.train_labels) + len(ds.test_labels), ds.train_labels.bincount().tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total, per_class = done.stdout.split(" ", 1)
    assert int(total) == 1797
    # 174-183 of each digit in the file; 80% of them are drawn for training
    assert all(120 <= n <= 170 for n in json.loads(per_class)), per_class
    assert hashlib.sha256(data.DIGITS_FILE.read_bytes()).hexdigest() == DIGITS_SHA256


@pytest.mark.parametrize("name,n_classes,n_train", [("cifar10", 10, 100), ("cifar100", 100, 20)])
def test_cifar_pickled_batches(tmp_path, name, n_classes, n_train):
    write_cifar(tmp_path, name)
    ds = load_dataset(name, tmp_path)
    check_dataset(ds, n_classes)
    assert ds.train_images.shape == (n_train, 3, 32, 32)
    assert ds.test_images.shape == (20, 3, 32, 32)
    assert ds.classes[:2] == ["class0", "class1"]


def test_cifar_without_network_names_dir_and_archive(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", no_network)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path / "data")
    message = info.value.one_line()
    assert str(tmp_path / "data") in message and "cifar-10-python.tar.gz" in message
    assert "\n" not in message


def test_cifar_archive_placed_by_hand_is_extracted(tmp_path):
    import tarfile
    write_cifar(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path)
    assert len(ds.train_labels) == 100


@pytest.mark.parametrize("test_split", ["test", "val"])
def test_image_folder_of_mixed_sizes(tmp_path, test_split):
    root = write_image_folder(tmp_path / "imgs", test_split=test_split)
    ds = load_dataset("imagefolder", root, image_size=24)
    check_dataset(ds, 3)
    assert ds.classes == ["cat", "dog", "frog"]
    assert ds.train_images.shape == (12, 3, 24, 24) and ds.test_images.shape == (6, 3, 24, 24)
    # class c was painted bright in channel c: the decoded pixels must say so
    for images, labels in ((ds.train_images, ds.train_labels),):
        means = images.float().mean(dim=(2, 3))
        assert (means.argmax(1) == labels).all()


def test_image_folder_is_cached_and_the_cache_follows_the_files(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    first = load_dataset("imagefolder", root)
    second = load_dataset("imagefolder", root)
    assert not first.extra["cache_hit"] and second.extra["cache_hit"]
    assert torch.equal(first.train_images, second.train_images)
    extra = root / "train" / "cat" / "extra.jpg"
    shutil.copy(root / "train" / "cat" / "0.jpg", extra)
    third = load_dataset("imagefolder", root)
    assert not third.extra["cache_hit"] and len(third.train_labels) == 13


def test_image_folder_problems_are_one_line(tmp_path):
    with pytest.raises(DataError, match="needs train/<class>/"):
        load_dataset("imagefolder", tmp_path)
    root = write_image_folder(tmp_path / "imgs")
    (root / "test" / "zebra").mkdir()
    (root / "train" / "cat" / "0.jpg").replace(root / "test" / "zebra" / "0.jpg")
    with pytest.raises(DataError, match="zebra"):
        load_dataset("imagefolder", root)


@pytest.mark.parametrize("n,batch_size", [(10, 3), (9, 3), (1, 4), (128, 128)])
def test_batches_cover_every_item_once(n, batch_size):
    order = torch.randperm(n)
    parts = list(batches(n, batch_size, order))
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(n))
    assert all(len(p) == batch_size for p in parts[:-1]) and 0 < len(parts[-1]) <= batch_size


def test_arrays_round_trip_for_the_object_store():
    ds = load_dataset("digits").limit(50, 20)
    back = data.Dataset.from_arrays(ds.to_arrays())
    assert torch.equal(back.train_images, ds.train_images) and back.classes == ds.classes
    assert len(back.train_labels) == 50 and len(back.test_labels) == 20


def test_limit_keeps_the_classes_mixed(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)  # stored class by class
    ds = load_dataset("imagefolder", root).limit(6, 3)
    assert len(ds.train_labels) == 6 and len(ds.test_labels) == 3
    assert len(set(ds.train_labels.tolist())) > 1  # the first 6 would all be "cat"
    again = load_dataset("imagefolder", root).limit(6, 3)
    assert torch.equal(ds.train_images, again.train_images)  # the same subset every time


def test_a_missing_image_folder_says_where_a_relative_path_was_looked_for(tmp_path):
    from tune_pipeline.data import DataError, load_imagefolder

    with pytest.raises(DataError) as missing:
        load_imagefolder(tmp_path / "nowhere")
    message = str(missing.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "beside the YAML file, in the working directory, then in the project" in message
