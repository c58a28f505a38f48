"""Train the squeezenet-digits example model: SqueezeNet 1.1 from scratch on scikit-learn's digits.

The counterpart of MATLAB's INT8 code-generation example, which fine-tunes SqueezeNet on a small
labelled image set split 70/30 per class. No pretrained weights are used: the same topology is
trained from scratch. The script

1. writes the 1797 digits out as 32x32 grayscale PNG files, ``images/{train,val}/<digit>/``,
   split 70/30 per class with a fixed seed (the same files on every run);
2. turns every image into the network input with edgeq's own preprocessing and the recipe's
   ``preprocess`` block, so training sees exactly what calibration and validation will see;
3. trains SqueezeNet 1.1 with random X/Y translation of up to 30 pixels; each convolution of the
   feature extractor is followed by batch normalization while training (without it this deep,
   plain network stalls at chance level from scratch) and the normalization is folded back into
   the convolution before export, so the exported graph is plain SqueezeNet 1.1;
4. exports ``model.onnx`` (opset 13, input ``data`` [N,3,227,227], output ``prob`` [N,10]) and
   reports its FP32 validation top-1 measured with ONNX Runtime.

Usage: python recipes/squeezenet-digits/train.py [--epochs N] [--out model.onnx] [--seed S]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgeq.data import preprocess_image
from edgeq.recipe import Preprocess, load

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 0  # fixed, so that the committed images never change with --seed
TRAIN_FRACTION = 0.7
IMAGE_SIZE = 32  # the 8x8 digits are stored upscaled to 32x32 (nearest neighbour)
MAX_SHIFT = 30  # pixels at 227x227, as in the seed's augmentation
THREADS = 2


def write_images(root: Path) -> dict[str, int]:
    """Write the digits as ``root/{train,val}/<digit>/<index>.png``; return the image count per split."""
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    rng = np.random.default_rng(SPLIT_SEED)
    counts = {"train": 0, "val": 0}
    for split in counts:
        shutil.rmtree(root / split, ignore_errors=True)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == digit))
        cut = round(TRAIN_FRACTION * len(members))
        for split, indices in (("train", members[:cut]), ("val", members[cut:])):
            folder = root / split / str(digit)
            folder.mkdir(parents=True)
            for index in sorted(indices):
                image = Image.fromarray(pixels[index]).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.NEAREST)
                image.save(folder / f"{index:04d}.png", optimize=True)
            counts[split] += len(indices)
    return counts


def load_split(folder: Path, spec: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under ``folder/<digit>/`` as one [N,3,H,W] tensor (edgeq's preprocessing) and its labels."""
    samples, labels = [], []
    for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(class_folder.glob("*.png")):
            samples.append(preprocess_image(path, spec, "NCHW"))
            labels.append(int(class_folder.name))
    return torch.from_numpy(np.stack(samples)), torch.tensor(labels)


class ConvBN(nn.Sequential):
    """A convolution followed by batch normalization, which :func:`fold_batch_norms` merges into one."""

    def __init__(self, inputs: int, outputs: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(nn.Conv2d(inputs, outputs, kernel_size, stride, padding), nn.BatchNorm2d(outputs))


def fold_batch_norms(module: nn.Module) -> None:
    """Replace every :class:`ConvBN` under ``module`` by the equivalent plain convolution (eval mode)."""
    for name, child in module.named_children():
        if isinstance(child, ConvBN):
            setattr(module, name, fuse_conv_bn_eval(child[0].eval(), child[1].eval()))
        else:
            fold_batch_norms(child)


class Fire(nn.Module):
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, inputs: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = ConvBN(inputs, squeeze, kernel_size=1)
        self.expand1x1 = ConvBN(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = ConvBN(squeeze, expand3x3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], dim=1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 with a new classifier; ``forward`` returns the class scores before softmax."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvBN(3, 64, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(512, classes, kernel_size=1),  # the layer the seed replaces for the new classes
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier[1].weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def translate(x: torch.Tensor, background: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each sample by a random whole number of pixels in [-MAX_SHIFT, MAX_SHIFT] along X and Y."""
    n, c, h, w = x.shape
    canvas = background.expand(n, c, h + 2 * MAX_SHIFT, w + 2 * MAX_SHIFT).clone()
    canvas[:, :, MAX_SHIFT : MAX_SHIFT + h, MAX_SHIFT : MAX_SHIFT + w] = x
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (n, 2), generator=generator).tolist()
    return torch.stack([canvas[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Top-1 accuracy in percent of the PyTorch model."""
    model.eval()
    hits = 0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].contiguous(memory_format=torch.channels_last)
        hits += int((model(batch).argmax(1) == y[start : start + batch_size]).sum())
    return 100.0 * hits / len(x)


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    background: torch.Tensor,
    epochs: int,
    seed: int,
    batch_size: int = 32,
) -> None:
    """Adam with a one-cycle learning rate (warm-up, then cosine decay); prints loss and val top-1 per epoch."""
    x, y = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            inputs = translate(x[batch], background, generator).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(inputs), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(
            f"epoch {epoch:2d}/{epochs}  loss {total / len(x):.4f}  val top-1 {accuracy(model, *val):6.2f} %"
            f"  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


def export(model: SqueezeNet, path: Path, check: torch.Tensor) -> None:
    """Fold the batch norms, check that the outputs on ``check`` stay the same, and write the model
    with a softmax on top as ONNX: ``data`` [N,3,227,227] -> ``prob`` [N,10]."""
    model.eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        before = model(check)
        fold_batch_norms(model)
        torch.testing.assert_close(model(check), before, rtol=1e-4, atol=1e-4)
    network = nn.Sequential(model, nn.Softmax(dim=1))
    torch.onnx.export(
        network,
        (torch.zeros(1, 3, 227, 227),),
        str(path),
        input_names=["data"],
        output_names=["prob"],
        dynamic_axes={"data": {0: "N"}, "prob": {0: "N"}},
        opset_version=13,
        dynamo=False,
    )


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Top-1 accuracy in percent of the exported model under ONNX Runtime (CPU)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = [session.run(["prob"], {"data": batch.numpy()})[0] for batch in x.split(batch_size)]
    return float(100.0 * np.mean(np.concatenate(scores).argmax(1) == y.numpy()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    parser.add_argument("--out", type=Path, default=HERE / "model.onnx", help="ONNX file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the augmentation")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)

    recipe = load(HERE / "recipe.yaml")
    counts = write_images(HERE / "images")
    print(f"images: {counts['train']} train, {counts['val']} val (32x32 PNG in {HERE / 'images'})", flush=True)
    data = load_split(recipe.resolve(recipe.calibration.path), recipe.preprocess)
    val = load_split(recipe.resolve(recipe.validation.path), recipe.preprocess)
    spec = recipe.preprocess
    background = torch.tensor([(0.0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]).view(1, -1, 1, 1)

    model = SqueezeNet(classes=10).to(memory_format=torch.channels_last)
    train(model, data, val, background, args.epochs, args.seed)
    export(model, args.out, check=val[0][:16])
    top1 = onnx_accuracy(args.out, *val)
    print(f"ONNX FP32 validation top-1: {top1:.2f} % ({len(val[1])} images, ONNX Runtime) -> {args.out}")
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
