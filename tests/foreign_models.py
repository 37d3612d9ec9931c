"""CIFAR teachers as RepDistiller and mdistiller build them, for the import tests: the module names, the order
in which modules are registered and the forward computation of their `models/resnet.py`, `resnetv2.py`,
`wrn.py` and `vgg.py` (HobbitLong/RepDistiller, BSD 2-Clause; mdistiller's `models/cifar` share them).
Written for these tests from reading those files, with only what a state dict and a forward pass need
(no feature hooks, no `is_feat`), so that their checkpoints can be made here, where they cannot be downloaded."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class CifarBasicBlock(nn.Module):   # resnet.py BasicBlock: conv1 bn1 relu conv2 bn2 (+ downsample), relu
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):   # resnet.py ResNet(depth, num_filters): resnet8..110, resnet8x4, resnet32x4
    def __init__(self, depth, num_filters, num_classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.fc = nn.Linear(num_filters[3], num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [CifarBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [CifarBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(F.avg_pool2d(x, 8).flatten(1))


class Bottleneck(nn.Module):   # resnetv2.py Bottleneck: 1x1, 3x3, 1x1 (x4), shortcut Sequential
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNetV2(nn.Module):   # resnetv2.py ResNet(Bottleneck, [3, 4, 6, 3]): RepDistiller's ResNet50 for CIFAR
    def __init__(self, num_blocks=(3, 4, 6, 3), num_classes=100):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.linear = nn.Linear(2048, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(Bottleneck(self.in_planes, planes, s)); self.in_planes = 4 * planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class WRNBlock(nn.Module):   # wrn.py BasicBlock: pre-activation, convShortcut when the width changes
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return out + (x if self.equal else self.convShortcut(a))


class NetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WRNBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x): return self.layer(x)


class WideResNet(nn.Module):   # wrn.py WideResNet(depth, num_classes, widen_factor): wrn_16_1 .. wrn_40_2
    def __init__(self, depth, widen_factor, num_classes=100):
        super().__init__()
        c = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.block1, self.block2, self.block3 = NetworkBlock(n, c[0], c[1], 1), NetworkBlock(n, c[1], c[2], 2), NetworkBlock(n, c[2], c[3], 2)
        self.bn1 = nn.BatchNorm2d(c[3])
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
        return self.fc(F.avg_pool2d(x, 8).flatten(1))


class VGG(nn.Module):   # vgg.py VGG(cfg, batch_norm=True): block0..4 of conv-bn-relu (the last relu dropped), pools between
    def __init__(self, cfg, num_classes=100):
        super().__init__()
        widths = [3] + [blk[-1] for blk in cfg]
        for i, blk in enumerate(cfg): setattr(self, f"block{i}", self._make_layers(blk, widths[i]))
        self.classifier = nn.Linear(512, num_classes)

    @staticmethod
    def _make_layers(cfg, in_channels):
        layers = []
        for v in cfg:
            layers += [nn.Conv2d(in_channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]; in_channels = v
        return nn.Sequential(*layers[:-1])

    def forward(self, x):
        h = x.shape[2]
        x = F.max_pool2d(F.relu(self.block0(x)), 2)
        x = F.max_pool2d(F.relu(self.block1(x)), 2)
        x = F.max_pool2d(F.relu(self.block2(x)), 2)
        x = F.relu(self.block3(x))
        if h == 64: x = F.max_pool2d(x, 2)
        x = F.relu(self.block4(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# kdbook zoo name -> the network RepDistiller's `model_dict` builds under that name
FOREIGN = {
    "resnet8x4": lambda c: CifarResNet(8, [32, 64, 128, 256], c),
    "resnet32x4": lambda c: CifarResNet(32, [32, 64, 128, 256], c),
    "resnet56": lambda c: CifarResNet(56, [16, 16, 32, 64], c),
    "resnet110": lambda c: CifarResNet(110, [16, 16, 32, 64], c),
    "wrn_40_2": lambda c: WideResNet(40, 2, c),
    "vgg13": lambda c: VGG([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]], c),
    "ResNet50": lambda c: ResNetV2((3, 4, 6, 3), c),
}


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    "`model` with random weights and batch-norm statistics (as a trained network has), in eval mode."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g); m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g); m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()
