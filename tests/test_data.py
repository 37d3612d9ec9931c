"Real data when it is there: the CIFAR-10 JPEG tree of the development machines (skipped elsewhere)."
import subprocess
from pathlib import Path

import pytest
import torch

from kdbook.data import dataset_info, load_split, make_loaders, stratified_subset

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    if not ARCHIVE.exists():
        pytest.skip("the CIFAR-10 JPEG archive (shared/data) is not on this machine")
    root = tmp_path_factory.mktemp("data")
    subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", str(root)], check=True)   # 8x faster than tarfile for 60k files
    return root


def test_cifar10_jpeg_tree_reads_as_cifar10(cifar10_root):
    train, test = load_split("cifar10", "train", cifar10_root, download=False), load_split("cifar10", "test", cifar10_root, download=False)
    assert (len(train), len(test)) == (50000, 10000)
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert torch.bincount(train.labels).tolist() == [5000] * 10 and torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.variant.startswith("cifar10-jpeg") and train.images.shape[1:] == (3, 32, 32)
    # the pixels are CIFAR-10's: per-channel means within JPEG rounding of the published statistics
    means = (train.images.float() / 255).mean((0, 2, 3))
    torch.testing.assert_close(means, torch.tensor(dataset_info("cifar10").mean), atol=0.01, rtol=0)


def test_cifar10_small_is_a_stratified_tenth(cifar10_root):
    bundle = make_loaders("cifar10", 64, seed=3, data_dir=cifar10_root, train_fraction=0.1, download=False)
    assert bundle.num_train == 5000 and len(bundle.train) == 79
    labels = bundle.train.dataset.split.labels
    assert torch.bincount(labels).tolist() == [500] * 10
    full = load_split("cifar10", "train", cifar10_root, download=False).labels
    assert torch.equal(labels, full[stratified_subset(full, 0.1, 3)])
