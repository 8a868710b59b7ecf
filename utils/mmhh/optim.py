"""MMHH's optimiser: SGD with Nesterov momentum, backbone at lr x1 and hash layer at x10,
and the three learning-rate schedules of its released code (docs/MMHH.md)."""
import torch

SCHEDULES = ("Stair_Step", "HashNet_Step", "DANN_INV")
LR_MULT = {"backbone": 1.0, "hash_layer": 10.0}
# The released default lr; HashNet_Step and DANN_INV started from it whatever --lr said
# (their schedulers had the value built in), which train_mmhh.py follows.
RELEASED_LR = 3e-4
FIXED_LR_SCHEDULES = ("HashNet_Step", "DANN_INV")


def learning_rate(schedule, t, lr, decay_step):
    """lr at iteration t (before the multipliers), from the base lr `lr`."""
    if schedule == "Stair_Step":
        return lr * 0.5 ** (t // decay_step)
    if schedule == "HashNet_Step":
        return lr * 0.5 ** (t // 2000)
    if schedule == "DANN_INV":
        return lr * (1 + 3e-4 * t) ** -0.75
    raise ValueError(f"unknown lr schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def weight_decay(schedule, stair_weight_decay):
    """Stair_Step takes --weight_decay; the HashNet schedules used 5e-4."""
    return stair_weight_decay if schedule == "Stair_Step" else 5e-4


def build_optimizer(model, kind, lr, decay):
    """SGD (momentum 0.9, Nesterov) or Adam over two groups, backbone and hash layer."""
    groups = [{"params": getattr(model, name).parameters(), "name": name, "lr": lr * mult}
              for name, mult in LR_MULT.items()]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=decay)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * LR_MULT[group["name"]]
