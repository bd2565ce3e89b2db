"""What the PyTorch models (``ncf``, ``multvae``) share: device choice, thread use, the epoch
progress bar, and weights saved with safetensors and checked against the network their
hyperparameters describe before anything is loaded.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_weights

import tastemaker.threads as thread_policy
from tastemaker.errors import ArtifactError, UsageError

WEIGHTS_FILE = "weights.safetensors"
# How safetensors names torch's dtypes (the header's "dtype" field).
_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}
# Below this many user x item cells, fit and scoring run torch on one thread: the work per
# batch is too small to split, and torch's OpenMP workers spin badly when cores are shared
# (measured: a 80 x 100 NeuMF fit took 4 s on one thread, 50 s on two beside other work).
SMALL_DATA_CELLS = 1 << 20

# The stderr console of the PyTorch models (progress bars, notes on long fits).
console = Console(stderr=True)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is parsed by torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(model: str, device: str) -> torch.device:
    """The device a fit asks for; UsageError when torch cannot parse it or has no CUDA."""
    try:
        resolved = resolve_device(device)
    except RuntimeError as exc:
        raise UsageError(f"{model}: bad device {device!r} ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{model}: device {device!r} asked for, but no CUDA here")
    return resolved


def loading_device(directory: Path, device: str) -> torch.device:
    """The device a saved model is loaded onto: its own, or the CPU where it was trained on a
    GPU and is served without one."""
    try:
        resolved = resolve_device(device)
    except RuntimeError as exc:
        raise ArtifactError(f"{directory}: bad device {device!r} ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return resolved


@contextlib.contextmanager
def threads_for(cells: int):
    """torch's intra-op threads inside: one for small data, else the thread policy's count
    (tastemaker.threads: --threads, TASTEMAKER_THREADS, an enclosing limit such as the fit's,
    or the cores free now), so a busy machine slows a fit in proportion; restored after."""
    before = torch.get_num_threads()
    count = 1 if cells < SMALL_DATA_CELLS else thread_policy.pick()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def epoch_progress(label: str, epochs: int):
    """A rich bar over epochs showing loss and validation NDCG (only on a terminal)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val NDCG@10 {task.fields[ndcg]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(label, total=epochs, loss="-", ndcg="-")

        def advance(loss: float, ndcg: float) -> None:
            shown = "-" if math.isnan(ndcg) else f"{ndcg:.4f}"
            progress.update(task, advance=1, loss=f"{loss:.4f}", ndcg=shown)

        yield advance


def write_weights(path: Path, net: torch.nn.Module, model: str) -> None:
    """The network's state as safetensors (tensors and a JSON header; no code, no pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {"model": model}
    data = save_weights(state, metadata=metadata)
    # A safetensors file starts with its header length (u64, little-endian); a length of
    # 0x280..0x5FF with low byte 0x80 reads like a pickle's protocol marker (0x80 0x02..05)
    # to scanners that refuse pickles. Pad the metadata until it does not.
    while data[0] == 0x80 and 2 <= data[1] <= 5:
        metadata["padding"] = metadata.get("padding", "") + " "
        data = save_weights(state, metadata=metadata)
    path.write_bytes(data)


def read_checked_weights(
    path: Path, expected: dict[str, torch.Tensor], model: str, device: torch.device
) -> dict[str, torch.Tensor]:
    """Tensors of ``path``, refused unless their names, shapes and dtypes are exactly those of
    ``expected`` (a state dict built on the meta device: no memory) and every float is finite.

    The header is compared before any tensor is read, so a file (or hyperparameters) describing
    a huge network allocates nothing.
    """
    if not path.is_file():
        raise ArtifactError(f"{path.parent}: {path.name} is missing")
    try:
        with safe_open(str(path), framework="pt") as weights:
            stored = {k: weights.get_slice(k) for k in weights.keys()}  # noqa: SIM118
            found = {k: (tuple(v.get_shape()), v.get_dtype()) for k, v in stored.items()}
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: cannot read weights ({exc})") from None
    if set(found) != set(expected):
        raise ArtifactError(
            f"{path}: weights {sorted(set(found) ^ set(expected))} do not match the "
            f"{model} network its parameters describe"
        )
    for name, tensor in expected.items():
        if found[name] != (tuple(tensor.shape), _SAFETENSORS_DTYPES.get(tensor.dtype)):
            raise ArtifactError(
                f"{path}: {name} is {found[name][1]} {list(found[name][0])}; the network "
                f"needs {_SAFETENSORS_DTYPES.get(tensor.dtype)} {list(tensor.shape)}"
            )
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read weights ({exc})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: {name} holds NaN or infinite weights")
    return state


def meta_state(build, directory: Path) -> dict[str, torch.Tensor]:
    """The state dict of the network ``build()`` makes, on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            return build().state_dict()
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise ArtifactError(
            f"{directory}: the hyperparameters describe no network ({exc})"
        ) from None


Net = TypeVar("Net", bound=torch.nn.Module)


def load_network(model: Any, directory: Path, build: Callable[[], Net]) -> Net:
    """A saved PyTorch model's network (``model``: an NCF model or Mult-VAE being loaded).

    The files were checked against the manifest's checksums by ``load()``; safetensors runs no
    code. Here the device is resolved (a GPU-trained model loads on the CPU where there is no
    GPU), the manifest's hyperparameters are checked, and the tensors' names, shapes and
    dtypes are compared with the network ``build()`` describes, built on the meta device (no
    memory), before anything is allocated.
    """
    model.device_ = loading_device(directory, model.device)
    trained_on, model.device = model.device, str(model.device_)
    try:
        model.validate_params()
    except UsageError as exc:
        raise ArtifactError(f"{directory}: bad hyperparameters in the manifest ({exc})") from None
    finally:
        model.device = trained_on  # the hyperparameter stays as trained
    expected = meta_state(build, directory)
    state = read_checked_weights(directory / WEIGHTS_FILE, expected, model.name, model.device_)
    net = build().to(model.device_)
    net.load_state_dict(state, strict=True)
    return net.eval()
