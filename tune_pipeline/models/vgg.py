"""VGG16 with BatchNorm in its CIFAR form: five conv stages and one linear
classifier (the 4096-wide ImageNet head would be 90% of the parameters and
overfits 32x32 images)."""

from __future__ import annotations

import torch.nn as nn

from tune_pipeline.models import register_model

# Channel widths per conv; "M" is a 2x2 max-pool.
VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, layout: list, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1, bias=False),
                           nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        # 32x32 input is 1x1 here already; the pool makes larger images work too.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model
def vgg16(num_classes: int = 10) -> nn.Module:
    return VGG(VGG16_LAYOUT, num_classes)
