import pytest
import torch

from tune_pipeline.models import UnknownModelError, count_parameters, create_model, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [10, 7])
def test_every_model_trains_a_step(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_models_accept_larger_images(name):
    # image folders may be resized to 64x64; every model must cope
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_catalogue_holds_the_mission_models():
    assert {"resnet18", "preact_resnet18", "vgg16", "small_cnn"} <= set(list_models())


def test_cifar_forms_have_expected_sizes():
    # the CIFAR forms are much smaller than the ImageNet ones (11.7M, 138M)
    assert 11.0e6 < count_parameters(create_model("resnet18")) < 11.3e6
    assert 14.0e6 < count_parameters(create_model("vgg16")) < 15.5e6
    assert count_parameters(create_model("small_cnn")) < 0.5e6


def test_unknown_model_lists_the_choices():
    with pytest.raises(UnknownModelError) as info:
        create_model("resnet19")
    message = str(info.value)
    assert "resnet19" in message
    for name in list_models():
        assert name in message
