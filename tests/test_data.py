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


def test_a_file_name_that_is_not_utf8_is_read_and_cached(tmp_path):
    "Old archives hold names in other encodings: such a file is read like any other, and the decoded cache is keyed on its bytes."
    import os
    from PIL import Image
    from kdbook.data import read_image_folder
    for c, cls in enumerate(("cat", "dog")):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8), (100 * c, 0, 0)).save(tmp_path / cls / "0000.jpg")
    odd = os.fsdecode(b"caf\xe9.jpg")                              # Latin-1 'café': not valid UTF-8
    Image.new("RGB", (8, 8), (0, 200, 0)).save(tmp_path / "dog" / odd)
    images, labels, classes = read_image_folder(tmp_path)
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 1, 1] and images.shape == (3, 3, 8, 8)
    again, _, _ = read_image_folder(tmp_path)                       # from the cache, keyed on the name's bytes
    assert torch.equal(images, again)
    assert any(p.suffix == ".npy" for p in (tmp_path.parent / ".kdbook-cache").iterdir())
