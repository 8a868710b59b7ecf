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
