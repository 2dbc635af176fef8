"""Can the demo network learn one indicator on its own? A diagnosis of a collapsed head.

Trains the recipe's network (``experiment=demo``'s backbone, the recipe's data pipeline,
split and augmentation, plus any ``--override``) with a class-weighted cross-entropy on one
indicator's grades only, and prints each epoch's training loss and validation macro-F1 against
the majority-grade and uniform-guess baselines. A head that collapses in the six-head recipe
but learns here suffers from sharing the network; one that only memorises its training images
(training loss falling, validation macro-F1 at the baselines) or does not learn at all lacks
visible evidence the network can use. Validation only; the test split is not read.

Run: ``python benchmarks/probe_head.py --data data/synthetic_hard --indicator dandruff``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch
from common import append_section, argument_parser, compose, table
from torch.nn import functional as F

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.evaluation.offsets import macro_f1
from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES
from scalp_ml.models.network import GradingNetwork
from scalp_ml.training.job import data_settings


def validation_grades(
    network: GradingNetwork, datamodule: ScalpDataModule, indicator: int
) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted grades of one indicator on the validation split."""
    network.eval()
    truth, predicted = [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            truth.append(batch["grades"][:, indicator])
            predicted.append(network(batch["image"])[:, indicator].argmax(dim=1))
    network.train()
    return torch.cat(truth).numpy(), torch.cat(predicted).numpy()


def main() -> None:
    """Trains the single-indicator probe and prints (or records) its learning curve."""
    parser = argument_parser(__doc__)
    parser.add_argument("--data", default="data/synthetic_hard")
    parser.add_argument("--indicator", choices=INDICATOR_NAMES, default="dandruff")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", action="append", default=[], help="a train.yaml override")
    args = parser.parse_args()
    overrides = ["experiment=demo", f"data.root={args.data}", *args.override]
    cfg = compose("train", overrides)
    torch.manual_seed(args.seed)
    datamodule = ScalpDataModule(**data_settings(cfg.data), seed=args.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    indicator = INDICATOR_NAMES.index(args.indicator)
    train_grades = datamodule.datasets["train"].grades[:, indicator]
    counts = np.bincount(train_grades, minlength=NUM_GRADES)
    weights = torch.tensor(counts.sum() / (NUM_GRADES * np.maximum(counts, 1)), dtype=torch.float)
    network = GradingNetwork(cfg.model.backbone, mean=cfg.model.mean, std=cfg.model.std)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.optimizer.lr)
    truth, _ = validation_grades(network, datamodule, indicator)
    majority = np.full_like(truth, counts.argmax())
    uniform = np.random.default_rng(args.seed).integers(0, NUM_GRADES, len(truth))
    rows = []
    for epoch in range(args.epochs):
        start, losses = time.perf_counter(), []
        datamodule.trainer = SimpleNamespace(current_epoch=epoch)  # the sampler's epoch
        for batch in datamodule.train_dataloader():
            outputs = network(batch["image"])[:, indicator]
            loss = F.cross_entropy(outputs, batch["grades"][:, indicator], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        truth, predicted = validation_grades(network, datamodule, indicator)
        shares = np.bincount(predicted, minlength=NUM_GRADES) / len(predicted)
        rows.append(
            [
                epoch + 1,
                f"{np.mean(losses):.3f}",
                f"{macro_f1(truth, predicted):.3f}",
                " / ".join(f"{share:.2f}" for share in shares),
                f"{time.perf_counter() - start:.0f}",
            ]
        )
        print(" | ".join(str(cell) for cell in rows[-1]), flush=True)
    header = ["epoch", "train loss", "val macro-F1", "predicted grade shares 0/1/2/3", "s"]
    lines = [
        f"`{args.indicator}` alone on {args.data} (`{' '.join(overrides)}`; class-weighted "
        f"cross-entropy, seed {args.seed}). Validation baselines: majority grade "
        f"{macro_f1(truth, majority):.3f}, uniform guess {macro_f1(truth, uniform):.3f}; "
        f"training grade counts {counts.tolist()}.",
        "",
        *table(header, rows),
    ]
    append_section(
        "One indicator alone (collapsed-head probe), CPU", lines, record=not args.no_record
    )


if __name__ == "__main__":
    main()
