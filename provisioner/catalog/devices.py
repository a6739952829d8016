"""GPUs and accelerators: how the catalog classifies a type's devices and how a request names them.

A **GPU** is a graphics processor with its maker (NVIDIA, AMD). `gpu=N` counts NVIDIA GPUs only
(what CUDA needs); any other GPU is asked for by its maker, series or model (`gpu=amd`,
`gpu=radeon`). An **accelerator** is a device with its own software stack, asked for with
`accel=`: AWS Inferentia and Trainium (the Neuron SDK) and Habana Gaudi (SynapseAI). AWS lists
Gaudi among a type's GPUs (DescribeInstanceTypes' GpuInfo, so the catalog's gpu_* columns): the
catalog moves it to the accelerator fields, so a dl1 has no GPU. Pure: no I/O.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Callable, Protocol

from provisioner.errors import UsageError


class DeviceFacts(Protocol):
    """What the device predicates read of an offer (catalog.model.Offer is one; typed here, not
    imported, so that the model and its device vocabulary import in one direction only)."""
    @property
    def gpu_count(self) -> int: ...
    @property
    def gpu_model(self) -> str | None: ...
    @property
    def gpu_manufacturer(self) -> str | None: ...
    @property
    def accel_count(self) -> int: ...
    @property
    def accel_model(self) -> str | None: ...

# Makers whose "GPUs" in AWS's data are accelerators with their own stack.
ACCELERATOR_GPU_MAKERS = ("habana",)
# The accelerator families `accel=` asks for, by the prefix of the normalised name, and the
# software stack (the image) each needs. Other accelerators in the catalog (FPGAs, Qualcomm AI100,
# video transcoders) have a kind but cannot be asked for by `accel=`.
REQUESTABLE = {"inferentia": "neuron", "trainium": "neuron", "neuron": "neuron", "gaudi": "gaudi",
               "habana": "gaudi"}
_OTHER_KINDS = {"virtex": "fpga", "qualcomm": "qualcomm", "u30": "media"}
REQUEST_ALIASES = {"habana": "gaudi"}   # the maker's name for its one accelerator family
NVIDIA = "nvidia"
_NAME_COUNT = re.compile(r"^([A-Za-z][A-Za-z0-9 _.-]*?)(?::(\d+))?$")
_COMPARE = {"=": operator.ge, ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
            "==": operator.eq, "!=": operator.ne}


def norm(name: str) -> str:
    """A device name as requests and the catalog compare it: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def kind(model: str | None) -> str | None:
    """The software stack of an accelerator model: 'neuron', 'gaudi', 'fpga', 'qualcomm', 'media',
    or 'other'; None for no model."""
    if not model:
        return None
    n = norm(model)
    for prefix, k in (REQUESTABLE | _OTHER_KINDS).items():
        if n.startswith(prefix):
            return k
    return "other"


def classify(gpu_count: int, gpu_model: str | None, gpu_maker: str | None, gpu_memory_gib: float | None,
             accel_model: str | None, accel_count: int) -> tuple:
    """(gpu_count, gpu_model, gpu_maker, gpu_memory_gib, accel_model, accel_count) of one catalog row,
    with GPUs that are accelerators (Gaudi) moved to the accelerator fields."""
    if gpu_count and gpu_maker and norm(gpu_maker) in ACCELERATOR_GPU_MAKERS and not accel_count:
        return 0, None, None, None, gpu_model, gpu_count
    if not gpu_count:
        gpu_model = gpu_maker = gpu_memory_gib = None
    if not accel_count:
        accel_model = None
    return gpu_count, gpu_model, gpu_maker, gpu_memory_gib, accel_model, accel_count


def _words(model: str) -> set[str]:
    first = model.split()[0] if model.split() else model
    return {norm(model), norm(first)}


def gpu_names(model: str | None, maker: str | None) -> frozenset[str]:
    """The names a `gpu=NAME` request may use for this GPU: its model, series (first word) and maker."""
    names = _words(model) if model else set()
    if maker:
        names.add(norm(maker))
    return frozenset(n for n in names if n)


def accel_names(model: str | None) -> frozenset[str]:
    """The names an `accel=NAME` request may use: the model, its first word, and its kind."""
    if not model:
        return frozenset()
    return frozenset(n for n in _words(model) | {kind(model) or ""} if n)


def requested_accelerator(name: str) -> str | None:
    """The accelerator family a requested name belongs to ('gaudi', 'inferentia2'...), None when it
    names none: the hint for a `gpu=` that names an accelerator, and `accel=`'s check."""
    n = norm(name)
    for prefix in REQUESTABLE:
        if n.startswith(prefix):
            return REQUEST_ALIASES.get(n, n)
    return None


def is_nvidia(maker: str | None) -> bool:
    return maker is not None and norm(maker) == NVIDIA


# ---- requests: `gpu=N`, `gpu=NAME[:N]`, `accel=NAME[:N]` ----------------------------------------

def parse_request(key: str, op: str, raw: str, text: str) -> tuple[str | None, int]:
    """(name, count) of a `gpu` or `accel` value: name None for `gpu=N` (NVIDIA GPUs), else the
    normalised vendor, series or model ('a10g', 'radeon', 'inferentia2'; 'habana' reads 'gaudi').
    UsageError for an accelerator under `gpu`, a GPU or a bare count under `accel`, a count below 1."""
    if key == "gpu" and re.fullmatch(r"\d+", raw):
        if int(raw) == 0 and op in ("=", ">="):
            raise UsageError(f"{text!r} asks for nothing: gpu=N needs N of at least 1 "
                             "(gpu==0 or !gpu=1 means no NVIDIA GPU)")
        return None, int(raw)
    if key == "accel" and re.fullmatch(r"\d+", raw):
        raise UsageError(f"accel names a model: accel=inferentia2, accel=trainium:16, accel=gaudi "
                         f"(a count alone, {raw!r}, names no accelerator)")
    m = _NAME_COUNT.match(raw)
    if not m or op not in ("=", "==", "!="):
        raise UsageError(f"bad GPU request {raw!r}: use gpu=N, gpu=MODEL or gpu=MODEL:N (a vendor, series "
                         "or model: nvidia, amd, radeon, a10g)" if key == "gpu" else
                         f"bad accelerator request {raw!r}: use accel=MODEL or accel=MODEL:N")
    name, count = m.group(1), int(m.group(2)) if m.group(2) else 1
    if count < 1:
        raise UsageError(f"the count in {raw!r} must be at least 1")
    family = requested_accelerator(name)
    if key == "gpu" and family:
        raise UsageError(f"{name} is an accelerator, not a GPU: write accel={family}"
                         + (f":{count}" if count != 1 else ""))
    if key == "accel" and not family:
        raise UsageError(f"unknown accelerator {name!r}: accel names a Gaudi, Inferentia or Trainium model "
                         f"(gaudi, inferentia, inferentia2, trainium, trainium2, neuron); for a GPU write gpu={raw}")
    return (family if key == "accel" else norm(name)), count


_gpu_names = functools.lru_cache(maxsize=256)(gpu_names)
_accel_names = functools.lru_cache(maxsize=256)(accel_names)


def nvidia_gpus(o: DeviceFacts) -> int:
    return o.gpu_count if o.gpu_count and is_nvidia(o.gpu_manufacturer) else 0


def predicate(key: str, op: str, name: str | None, count: int) -> Callable[[DeviceFacts], bool]:
    """A parsed request as a predicate over offers: how many of the named devices an offer has,
    compared with `count` (`=` means at least; `!=` with a name: none of them)."""
    if name is None:
        if op in ("=", ">="):
            return lambda o: nvidia_gpus(o) >= count
        compare = _COMPARE[op]
        return lambda o: compare(nvidia_gpus(o), count)
    if key == "gpu":
        def have(o: DeviceFacts) -> int:
            return o.gpu_count if o.gpu_count and name in _gpu_names(o.gpu_model, o.gpu_manufacturer) else 0
    else:
        def have(o: DeviceFacts) -> int:
            return o.accel_count if o.accel_count and name in _accel_names(o.accel_model) else 0
    if op == "!=":
        return lambda o: not have(o)
    if op == "==":
        return lambda o: have(o) == count
    return lambda o: have(o) >= count


# ---- which image an instance type boots -------------------------------------------------------
# A plain image (per architecture) runs CPU types; a type with devices needs their driver stack:
# `gpu` the NVIDIA driver and container toolkit, `amdgpu` AMD's driver (ROCm), `neuron` the AWS
# Neuron driver and runtime (Inferentia, Trainium), `gaudi` Habana's driver (SynapseAI). Other
# accelerators (FPGAs, Qualcomm AI100, video transcoders) boot the plain image: no slot carries
# their SDKs, and `accel=` does not ask for them.
IMAGE_CLASSES = ("gpu", "amdgpu", "neuron", "gaudi")
IMAGE_ARCHES = ("x86_64", "arm64")
IMAGE_SLOTS = IMAGE_ARCHES + tuple(f"{c}_{a}" for c in IMAGE_CLASSES for a in IMAGE_ARCHES)


def image_class(gpu_count: int, gpu_maker: str | None, accel_model: str | None, accel_count: int) -> str | None:
    """The driver stack a type needs beyond the plain image (None: the plain image does)."""
    if gpu_count:
        return "amdgpu" if gpu_maker and norm(gpu_maker) == "amd" else "gpu"
    k = kind(accel_model) if accel_count else None
    return k if k in ("neuron", "gaudi") else None
