"""Fixtures shared by the test modules."""
import os
import tarfile

import pytest

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data")


@pytest.fixture(scope="session")
def coco_mini(tmp_path_factory):
    """The real multi-label fixture ../shared/data/coco-mini.tar.gz, unpacked: the coco-mini folder."""
    archive = os.path.join(SHARED, "coco-mini.tar.gz")
    if not os.path.exists(archive):
        pytest.skip("../shared/data/coco-mini.tar.gz is absent (the real multi-label fixture)")
    root = tmp_path_factory.mktemp("coco")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root / "coco-mini"


@pytest.fixture(scope="session")
def cifar10_cache(tmp_path_factory):
    """../shared/data/cifar10-jpeg.tar.gz decoded once per pytest run by utils.data.cifar10:
    (the ImageArray of that first decoding, the cache folder that now holds it)."""
    archive = os.path.join(SHARED, "cifar10-jpeg.tar.gz")
    if not os.path.exists(archive):
        pytest.skip("../shared/data/cifar10-jpeg.tar.gz is absent (the real CIFAR-10 export)")
    from utils.data.cifar10 import load_cifar10

    cache = str(tmp_path_factory.mktemp("cifar10-cache"))
    return load_cifar10(archive, cache_dir=cache), cache


FLICKR_SLICE = 300  # images im1..im300 of the shared MIRFlickr-25K archive


@pytest.fixture(scope="session")
def flickr_slice(tmp_path_factory):
    """A small slice of ../shared/data/mirflickr25k-20k.tar in its own layout: images 1 to 300,
    the annotation files restricted to them, and the published lists as they are (most of their
    rows then name missing images). Returns the folder; `<folder>.tar` holds the same."""
    archive = os.path.join(SHARED, "mirflickr25k-20k.tar")
    if not os.path.exists(archive):
        pytest.skip("../shared/data/mirflickr25k-20k.tar is absent (the real MIRFlickr-25K slice)")
    root = tmp_path_factory.mktemp("flickr") / "mirflickr25k"
    wanted = {f"mirflickr/im{k}.jpg" for k in range(1, FLICKR_SLICE + 1)}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not member.isfile() or not (name in wanted or not name.startswith("mirflickr/")):
                continue
            data = tar.extractfile(member).read()
            if name.startswith("mirflickr25k_annotations_v080/") and not name.endswith("README.txt"):
                data = b"".join(line + b"\n" for line in data.split() if int(line) <= FLICKR_SLICE)
            os.makedirs(root / os.path.dirname(name), exist_ok=True)
            (root / name).write_bytes(data)
    with tarfile.open(f"{root}.tar", "w") as tar:
        tar.add(root, arcname=".")
    return root
