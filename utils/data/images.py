"""Turning stored images into normalised network input.

Two paths:
- ArrayImages, for 32x32 data sets held in memory (CIFAR-10, digits): batches are
  sliced from one uint8 tensor kept on the training device, and augmentation,
  resizing and normalisation are tensor ops on the whole batch: no per-image PIL.
- FileImages, for list-file data sets (NUS-WIDE, FLICKR, COCO, ImageNet): a torch
  Dataset that decodes each file with PIL into uint8, for a DataLoader with worker
  processes; `Normalise` turns each batch into network input on its device.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from utils.errors import UserError


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # grey levels 0..65535 (PNG and TIFF)
ORIENTATION = 0x0112  # the EXIF tag; 1 is upright


def open_rgb(path):
    """An image file as the 8-bit RGB PIL image a camera or viewer shows: upright (its EXIF
    orientation applied) and, for 16-bit grey, scaled to 8 bits (convert("RGB") would clip
    every level above 255 to white). The one decoding path of training, testing and the index."""
    with Image.open(path) as im:
        if im.getexif().get(ORIENTATION, 1) != 1:  # exif_transpose would otherwise copy the pixels for nothing
            im = ImageOps.exif_transpose(im)
        if im.mode in SIXTEEN_BIT:
            levels = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
            im = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8))  # rounded, 65535 -> 255
        return im.convert("RGB")


class ArrayImages:
    """N x H x W x 3 uint8 images served as B x 3 x S x S float batches on `device`.

    resize/crop: upsample to `resize` then take the centre `crop` (the spec's
    Resize(256) + CenterCrop(224) for the paper preset); None keeps the stored size.
    augment: random crop with 4-pixel zero padding and horizontal flip (train only).
    """

    def __init__(self, images, mean, std, device="cpu", resize=None, crop=None, augment=False):
        self.images = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).contiguous()  # N x 3 x H x W uint8
        self.device = self.images.device
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.resize, self.crop, self.augment = resize, crop or resize, augment

    def __len__(self):
        return len(self.images)

    def batch(self, index, train=False, generator=None):
        """Images at `index` (a 1-D tensor or sequence of ints) as a B x 3 x S x S float tensor."""
        # copies to the device without waiting for it (a blocking copy waits for the queued work)
        index = torch.as_tensor(index).to(self.device, non_blocking=True)
        x = self.images[index].float().div_(255)  # B x 3 x H x W
        if train and self.augment:
            x = _random_crop_flip(x, generator)
        if self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
            off = (self.resize - self.crop) // 2
            x = x[:, :, off:off + self.crop, off:off + self.crop]
        return (x - self.mean) / self.std


def _random_crop_flip(x, generator, pad=4):
    """Per-image random crop from a zero-padded batch and random horizontal flip (B x 3 x H x W)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    # draw on the CPU generator so results do not depend on the device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device, non_blocking=True)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # B x 1 x H x 1
    cols = dx[:, None] + torch.arange(w, device=x.device)  # B x W
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # B x 1 x 1 x W
    index = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(3, device=x.device)[None, :, None, None]
    return padded[index, channel, rows, cols]


def file_transform(resize=256, crop=224, train=False, square=False, scale=(0.08, 1.0)):
    """PIL -> 3 x S x S uint8 tensor transform for list-file images; `Normalise` makes the
    network input of a batch of them.

    MAH (train and test alike): Resize(resize), CenterCrop(crop). MMHH/HashNet: resize
    to a square (square=True). Training adds RandomResizedCrop(crop) keeping a `scale`
    range of the area (torchvision's default for HashNet/MMHH) and flips.
    """
    from torchvision import transforms  # here: importing torchvision takes seconds a bad command need not wait

    if not train:
        return ResizeCentre(resize, crop, square)
    size = (resize, resize) if square else resize
    return transforms.Compose([transforms.Resize(size), transforms.RandomResizedCrop(crop, scale=scale),
                               transforms.RandomHorizontalFlip(), transforms.PILToTensor()])


class ResizeCentre:
    """PIL image -> 3 x crop x crop uint8 tensor: the very pixels of torchvision's Resize(resize)
    (square: Resize((resize, resize))), CenterCrop(crop), PILToTensor (tested against them).
    PIL resamples and crops as there; only their glue is written out, because for small images
    the three transforms' per-call checks cost more than the resampling (evaluation and index
    encoding decode every image this way)."""

    def __init__(self, resize, crop, square=False):
        self.resize, self.crop, self.square = resize, crop, square

    def __call__(self, image):
        w, h = image.size
        if self.square:
            size = (self.resize, self.resize)
        else:  # the shorter side to `resize`, the longer in proportion, rounded down
            longer = int(self.resize * max(w, h) / min(w, h))
            size = (self.resize, longer) if w <= h else (longer, self.resize)
        if size != (w, h):
            image = image.resize(size, Image.BILINEAR)
            w, h = size
        c = self.crop
        if c > w or c > h:  # torchvision pads with zeros first: its own code does that rare case
            from torchvision.transforms.functional import center_crop
            image = center_crop(image, c)
        elif (w, h) != (c, c):
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
            image = image.crop((left, top, left + c, top + c))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # H x W x 3 -> 3 x H x W

    def __repr__(self):
        return f"ResizeCentre(resize={self.resize}, crop={self.crop}, square={self.square})"


class Normalise:
    """B x 3 x S x S uint8 images -> network input on `device`: x / 255, less the channel mean,
    over the channel std; the very floats of torchvision's ToTensor then Normalize. Done on the
    batch once it is on its device, not per image in the workers: a float pass per image costs
    the decoding workers more than the decoding itself, and uint8 moves a quarter of the bytes.
    The constants go to the device once, here: a copy per batch would wait for the device."""

    def __init__(self, mean, std, device):
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)[:, None, None]  # 3 x 1 x 1
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)[:, None, None]

    def __call__(self, x):
        return x.to(self.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)


class FileImages(torch.utils.data.Dataset):
    """Images of a utils.data.listfiles.ImageList: item i -> (3 x S x S uint8 tensor, i)."""

    def __init__(self, image_list, transform):
        self.list, self.transform = image_list, transform

    def __len__(self):
        return len(self.list.paths)

    def __getitem__(self, i):
        path = self.list.paths[i]
        try:
            image = open_rgb(path)
        except Exception as e:
            list_file, line = self.list.source[i]
            raise UserError(f"{list_file}:{line}: cannot read image {path} ({type(e).__name__}); "
                            "replace the file or drop its line")
        return self.transform(image), i


class SeededItems(torch.utils.data.Dataset):
    """Items of `dataset` by key (i, seed): item i transformed under the global torch generator
    seeded with `seed` (None: untouched), so that random crops depend on the key only, not on
    worker processes or on what the process drew before. The keys come from the sampler, so
    one DataLoader with lasting workers serves every pass (utils.data.feeder)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        i, seed = key
        if seed is None:
            return self.dataset[i]
        with torch.random.fork_rng(devices=[]):  # the caller's generator state is restored after
            torch.manual_seed(seed)
            return self.dataset[i]
