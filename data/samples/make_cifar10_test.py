"""Make `cifar10-test.npz`: the first 6 test images of each CIFAR-10 class, sorted by class (60 images).

The notebooks' "what the loss sees" pictures run the committed ResNet20 teacher on these real images, so
that the relation graphs they draw show the structure a trained network gives, on any machine (the
CIFAR-10 data itself is not shipped). The pixels are those of the `cifar10-jpeg` tree kdbook's
committed teachers were trained on (the JPEG re-encoding of the CIFAR-10 test set, Krizhevsky 2009).

    python data/samples/make_cifar10_test.py --data-dir <folder holding cifar10-jpeg/>
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from kdbook.data import load_split

PER_CLASS = 6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    args = ap.parse_args()
    split = load_split("cifar10", "test", args.data_dir, download=False)
    keep = torch.cat([torch.nonzero(split.labels == c).flatten()[:PER_CLASS] for c in range(len(split.classes))])
    out = Path(__file__).with_name("cifar10-test.npz")
    np.savez_compressed(out, images=split.images[keep].numpy(), labels=split.labels[keep].numpy(),
                        classes=np.array(split.classes), variant=np.array(split.variant))
    print(f"{out.name}: {len(keep)} images, {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
