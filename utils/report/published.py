"""What the report compares with and how it names things: the papers' published values,
the data sets' display names and figure files, the headline regime and metric, the methods
in table order."""


NAMES = {"cifar10": "CIFAR-10", "nuswide21": "NUS-WIDE", "flickr25k": "MIRFlickr-25K"}
FIGURES = {"cifar10": "CIFAR.png", "nuswide21": "NUSWIDE.png", "flickr25k": "FLICKR.png"}
RETRIEVAL_FIGURES = {d: f.replace(".png", "_retrieval.png") for d, f in FIGURES.items()}
PR_FIGURES = {d: f.replace(".png", "_pr.png") for d, f in FIGURES.items()}


# The preset of the headline runs: ImageNet weights, the papers' zero start, within a CPU's budget
HEADLINE_PRESET = "cpu-pretrained"
# The rest of the regime docs/claims.md declares for its runs: a CPU, and the preset's backbone as
# the MAH and the MMHH records name it. A run of the preset on a GPU, or with another --backbone,
# makes a series of its own: other arithmetic or another network, never paired with these.
HEADLINE_DEVICE = "cpu"
HEADLINE_BACKBONES = ("mobilenet_v2", "MobileNetV2Fc")


def declared_regime(record):
    """Whether a record (or a series key's fields) ran in the declared regime: the headline preset,
    on a CPU, with the preset's backbone."""
    return (record.get("preset") == HEADLINE_PRESET and record.get("device") == HEADLINE_DEVICE
            and record.get("backbone") in HEADLINE_BACKBONES)


# The quantity each data set's headline MAH table compares with the paper: its table's MAP
# (CIFAR-10), or the mAP@5000 of its figures where it has no table
HEADLINE_METRIC = {"cifar10": ("map_tie_aware", "tie-aware MAP"), "flickr25k": ("map_at_5000", "mAP@5000"),
                   "nuswide21": ("map_at_5000", "mAP@5000")}
# The two MAH networks the paper compares, and every MAH-script method in table order:
# ADSH, the single-head baseline (--adsh), first
MAH_VARIANTS = ("MAH-flat", "MAH-cascade")
MAH_METHODS = ("ADSH", *MAH_VARIANTS)
MMHH_METHODS = ("MMHH", "MMHH + memory", "MMHH0", "DCH", "Hamming")
LOSS_NAMES = {"MMHH": "MMHH loss", "MMHH + memory": "MMHH loss, memory bank", "MMHH0": "MMHH loss without margin",
              "DCH": "DCH loss", "Hamming": "HashNet loss"}
MAH_BITS = (4, 6, 8, 10, 12)
COLOURS = {"ADSH": "tab:green", "MAH-flat": "tab:blue", "MAH-cascade": "tab:orange"}
OPT_TEST = {True: "optimised (--opt-test)", False: "DeepHash/HashNet default"}


# MAP of the paper's table (ResNet-50); it gives none for NUS-WIDE or FLICKR.
PUBLISHED_MAP = {
    ("cifar10", "MAH-flat"): dict(zip(MAH_BITS, (0.4759, 0.8197, 0.9339, 0.9335, 0.9503))),
    ("cifar10", "MAH-cascade"): dict(zip(MAH_BITS, (0.7460, 0.8950, 0.9429, 0.9489, 0.9537))),
}


# The figures' "Precision@5K", read off by eye (approximate): the original's calc_topMap(..., 5000),
# i.e. mAP@5000, stored as "topkpre". ADSH: the single-head curve of the CIFAR-10 figure.
PUBLISHED_MAP5000 = {
    ("cifar10", "ADSH"): dict(zip(MAH_BITS, (0.52, 0.61, 0.86, 0.91, 0.91))),
    ("cifar10", "MAH-flat"): dict(zip(MAH_BITS, (0.50, 0.84, 0.93, 0.93, 0.955))),
    ("cifar10", "MAH-cascade"): dict(zip(MAH_BITS, (0.77, 0.88, 0.93, 0.94, 0.945))),
    ("nuswide21", "MAH-flat"): dict(zip(MAH_BITS, (0.76, 0.82, 0.83, 0.86, 0.86))),
    ("nuswide21", "MAH-cascade"): dict(zip(MAH_BITS, (0.845, 0.85, 0.87, 0.90, 0.91))),
    ("flickr25k", "MAH-flat"): dict(zip(MAH_BITS, (0.880, 0.898, 0.910, 0.916, 0.931))),
    ("flickr25k", "MAH-cascade"): dict(zip(MAH_BITS, (0.883, 0.901, 0.913, 0.908, 0.915))),
}
