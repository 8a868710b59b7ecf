"""The one table of per-dataset facts, looked up by name.

Every script takes a dataset name; everything that differs between datasets
(label layout, protocol sizes, normalisation, R of MAP@TopK, where the images
come from) is read from here, never written into a script.
"""
from dataclasses import dataclass, field

from utils.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The MAH code normalised NUS-WIDE and FLICKR with these (docs/MAH.md).
MAH_LIST_MEAN = (0.3893, 0.4203, 0.4361)
MAH_LIST_STD = (0.2393, 0.2354, 0.2464)


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: int
    multi_label: bool
    # "cifar10" (official archives / image tree), "digits" (scikit-learn), "lists" (list files), "own" (OWN below)
    source: str
    mean: tuple
    std: tuple
    topk: int  # R of MAP@TopK; -1 ranks the whole database
    query: int  # queries in the published protocol (per class when `per_class`)
    train: int = 0  # training images (0: the database is the training pool)
    per_class: bool = False
    protocols: tuple = ()  # split protocols drawn by utils.data.splits (array datasets)
    class_names: tuple = field(default=(), repr=False)
    # MMHH --similar_weight config: the weight of similar pairs its released code set per
    # data set (COCO 1, NUS-WIDE 5); data sets it did not train on get 1
    similar_weight: float = 1.0
    # list files published with the original MAH code (`<part>_image.txt`): the authors' image
    # path prefix, and their label columns as a permutation of the alphabetical order
    # (column j = alphabetical column original_columns[j]); empty where unknown
    original_prefix: str = ""
    original_columns: tuple = field(default=(), repr=False)
    # published lists whose queries are database items too (a query then retrieves itself):
    # which lists, for the notice that says so; empty where no published list does this
    queries_in_database: str = ""
    note: str = ""


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DATASETS = {d.name: d for d in (
    Dataset("cifar10", 10, False, "cifar10", IMAGENET_MEAN, IMAGENET_STD, topk=-1, query=100, train=500,
            per_class=True, protocols=("dpsh", "deephash", "full"), class_names=CIFAR10_CLASSES,
            note="60,000 32x32 images; dpsh: 100 queries and 500 training images per class"),
    Dataset("flickr25k", 38, True, "lists", MAH_LIST_MEAN, MAH_LIST_STD, topk=5000, query=1700,
            original_prefix="/home/yadan/github/CIKM2018-Code/ADSH-AAAI2018/ADSH_pytorch/data/Flickr-25/",
            # the order the authors' script walked its tag folder (checked on all 25,000 rows of
            # the published lists against the official annotation files)
            original_columns=(7, 31, 17, 35, 16, 12, 25, 9, 28, 14, 0, 5, 29, 20, 34, 33, 22, 4, 13, 8, 15, 2, 30,
                              21, 32, 10, 6, 37, 1, 19, 24, 26, 36, 3, 23, 18, 27, 11),
            note="MIRFlickr-25K, 38 tag columns (alphabetical file order); 1,700 queries, 23,300 database"),
    Dataset("nuswide21", 21, True, "lists", MAH_LIST_MEAN, MAH_LIST_STD, topk=5000, query=100, per_class=True,
            similar_weight=5.0,
            note="NUS-WIDE, 21 most frequent concepts; 100 queries per concept (2,100)"),
    Dataset("nuswide81", 81, True, "lists", IMAGENET_MEAN, IMAGENET_STD, topk=5000, query=5000, train=10000,
            similar_weight=5.0,
            note="NUS-WIDE, 81 concepts, HashNet lists"),
    Dataset("coco80", 80, True, "lists", IMAGENET_MEAN, IMAGENET_STD, topk=5000, query=5000, train=10000,
            queries_in_database="HashNet's (and MMHH's) published MS-COCO lists, whose database holds all 5,000 "
                                "queries",
            note="MS-COCO, 80 categories, HashNet lists"),
    Dataset("imagenet100", 100, False, "lists", IMAGENET_MEAN, IMAGENET_STD, topk=1000, query=5000, train=13000,
            note="ImageNet, 100 classes, HashNet lists"),
    Dataset("digits", 10, False, "digits", IMAGENET_MEAN, IMAGENET_STD, topk=-1, query=10, per_class=True,
            protocols=("dpsh",), class_names=tuple(str(i) for i in range(10)),
            note="scikit-learn's 1,797 8x8 digits, upsampled to 32x32x3: the offline default"),
)}

# The two generic sources of a user's own images (utils.data.own), for data sets with no row
# above: the label count, single or multi label and class names come from the images or list
# files; the rest is a default here, which an option changes (docs/data.md): ImageNet's
# normalisation, the one the pretrained backbones learned with (MAH --mean/--std); R of
# MAP@TopK the whole database (MMHH --topk); similar pairs weighted 1 (MMHH --similar_weight).
OWN = {d.name: d for d in (
    Dataset("folder", 0, False, "own", IMAGENET_MEAN, IMAGENET_STD, topk=-1, query=0, protocols=("dpsh", "deephash"),
            note="a folder (or .tar/.tar.gz/.zip) of class folders; the split drawn from the seed and the sizes given"),
    Dataset("lists", 0, False, "own", IMAGENET_MEAN, IMAGENET_STD, topk=-1, query=0,
            note="MAH or HashNet list files, any number of label columns; the split the files give"),
)}

# The names the original scripts and command lines use.
ALIASES = {
    "cifar": "cifar10", "flickr": "flickr25k", "mirflickr": "flickr25k", "mirflickr25k": "flickr25k",
    "nuswide": "nuswide21", "nus": "nuswide21", "coco": "coco80", "imagenet": "imagenet100",
}


def get_dataset(name):
    """The table entry for `name`; spellings like 'CIFAR-10', 'coco_80', 'NUS_WIDE' are accepted."""
    key = name.lower().replace("-", "").replace("_", "")
    key = ALIASES.get(key, key)
    if key in OWN:
        return OWN[key]
    if key not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}; for your own images: folder "
                        "(a folder of class folders) or lists (list files), see docs/data.md")
    return DATASETS[key]
