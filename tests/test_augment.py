import textwrap

import pytest
import torch

from tune_pipeline import augment as A
from tune_pipeline.augment import TransformContext, TransformScriptError, load_transform_script

from conftest import TRANSFORM_SCRIPTS


def make_ctx(seed=0):
    return TransformContext(mean=torch.tensor([0.5, 0.5, 0.5]), std=torch.tensor([0.25, 0.25, 0.25]),
                            generator=torch.Generator().manual_seed(seed))


def textured_batch(n=16):
    # every image the same, so any difference in the output comes from the augmentation
    image = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return image.expand(n, 3, 32, 32).clone()


def test_shipped_scripts_exist():
    names = {p.name for p in TRANSFORM_SCRIPTS}
    assert {"runtime_transform_basic.py", "runtime_transform_advanced.py"} <= names


@pytest.mark.parametrize("script", TRANSFORM_SCRIPTS, ids=lambda p: p.name)
def test_transform_script_contract(script):
    loaded = load_transform_script(script)
    batch = textured_batch()
    train = loaded.train_transform(batch, make_ctx())
    test = loaded.test_transform(batch, make_ctx())
    for out in (train, test):
        assert out.shape == batch.shape
        assert out.dtype == torch.float32
        assert out.device == batch.device
        assert torch.isfinite(out).all()
    # independent randomness per image: identical inputs, different outputs
    distinct = {tuple(img.flatten()[:4096].tolist()) for img in train}
    assert len(distinct) > len(batch) // 2
    # the test transform is deterministic and gives identical images for identical inputs
    assert torch.equal(test[0], test[-1])
    assert torch.equal(test, loaded.test_transform(batch, make_ctx(seed=5)))


@pytest.mark.parametrize("script", TRANSFORM_SCRIPTS, ids=lambda p: p.name)
def test_transform_script_is_reproducible_per_seed(script):
    loaded = load_transform_script(script)
    batch = textured_batch()
    a = loaded.train_transform(batch, make_ctx(seed=3))
    b = loaded.train_transform(batch, make_ctx(seed=3))
    c = loaded.train_transform(batch, make_ctx(seed=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("fill,mode", [("zeros", "constant"), ("reflect", "reflect")])
def test_random_crop_is_a_window_of_the_padded_image(fill, mode):
    x = torch.arange(16 * 2 * 8 * 8, dtype=torch.float32).view(16, 2, 8, 8)
    out = A.random_crop(x, padding=2, generator=torch.Generator().manual_seed(0), fill=fill)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode=mode)
    offsets = set()
    for i in range(16):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert windows, f"image {i} is not a crop of its padded self"
        offsets.add(windows[0])
    assert len(offsets) > 4  # offsets differ image by image


def test_normalize_leaves_a_float_input_alone():
    x = torch.full((1, 3, 2, 2), 255.0)
    A.normalize(x, torch.tensor([0.5] * 3), torch.tensor([0.5] * 3))
    assert (x == 255.0).all()


def test_random_crop_keeps_uint8():
    x = textured_batch(4)
    out = A.random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_flip_mirrors_some_images_and_keeps_others():
    x = textured_batch(64)
    out = A.random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, x[0].flip(2)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(32, 3, 16, 16)
    out = A.cutout(x, size=4, generator=torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 16).all()
    assert len({int(z) for z in zeros}) > 1 or len({tuple(o[0].nonzero()[0].tolist()) for o in out}) > 1


def test_normalize_matches_the_formula():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = A.normalize(x, torch.tensor([0.5] * 3), torch.tensor([0.5] * 3))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(-1.0)) and torch.allclose(out[0, :, 0, 1], torch.tensor(1.0))


def test_missing_script_is_named(tmp_path):
    with pytest.raises(TransformScriptError, match="does not exist"):
        load_transform_script(tmp_path / "nope.py")


@pytest.mark.parametrize("body,message", [
    ("import not_a_module_anywhere\n", "failed to import: ModuleNotFoundError"),
    ("def train_transform(images, ctx):\n    return images\n", "does not define test_transform"),
    ("x = 1\n", "does not define train_transform and test_transform"),
    ("def train_transform(images):\n    return images\ndef test_transform(images, ctx):\n    return images\n",
     "train_transform must take (images, ctx)"),
])
def test_broken_scripts_say_what_is_wrong(tmp_path, body, message):
    script = tmp_path / "broken.py"
    script.write_text(textwrap.dedent(body))
    with pytest.raises(TransformScriptError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_transform_script(script)
    assert str(script) in str(info.value)
