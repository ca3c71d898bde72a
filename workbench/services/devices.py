"""Where the app's models run: one device, chosen at start, and the one place that moves work there.

Every model the registry hands out goes through :meth:`Placement.model` and every input tensor (images,
token ids, class ids) and random generator of a request through :meth:`Placement.tensor` /
:meth:`Placement.generator`, so one request cannot mix devices. Results come back to the CPU only to
become pictures and numbers. A device that runs out of memory is reported through :func:`working_on`
(what the request tried, what to lower); ``workbench.ui.components.errors`` turns it into a message.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)
DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"


class DeviceUnavailable(ValueError):
    """The requested device does not exist here; the message lists the ones that do."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices this machine has, as ``--device`` accepts them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def resolve_device(text: str = "auto") -> torch.device:
    """``auto`` (the first CUDA GPU, else mps, else cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -> a device
    that exists here; anything else raises :class:`DeviceUnavailable` naming the devices there are."""
    choice = (text or "").strip().lower() or "auto"
    if choice == "auto":
        return torch.device(next((d for d in available_devices() if d != "cpu"), "cpu"))
    present = available_devices()
    try:
        device = torch.device(choice)
    except RuntimeError as err:
        raise DeviceUnavailable(f"device: {text!r} is not a device name ({DEVICE_CHOICES}); "
                                f"this machine has {', '.join(present)}") from err
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda" and f"cuda:{device.index or 0}" in present:
        return torch.device("cuda", device.index or 0)
    if device.type == "mps" and "mps" in present:
        return torch.device("mps")
    raise DeviceUnavailable(f"device: {text!r} is not available here; this machine has {', '.join(present)}")


class Placement:
    """The app's device and the only code that moves models, inputs and random generators onto it."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def model(self, module: M) -> M:
        """``module`` moved onto the device (in place, as ``nn.Module.to`` does)."""
        return module.to(self.device)

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        """An input tensor on the device."""
        return x.to(self.device)

    def generator(self, seed: int) -> torch.Generator:
        """A seeded random generator on the device (draws on a GPU need a generator there)."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def __repr__(self) -> str:
        return f"Placement({str(self.device)!r})"


@contextmanager
def working_on(task: str, lower: str) -> Iterator[None]:
    """Label an out-of-memory error raised inside with ``task`` (what was tried) and ``lower`` (what to reduce),
    for the message the UI shows; the cached GPU memory is released before it propagates."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        err.sftok_task = (task, lower)  # read by out_of_memory_message
        release_cached_memory()
        raise


def release_cached_memory() -> None:
    """Give the CUDA caching allocator's free blocks back, so the next request starts from a clean pool."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def out_of_memory_message(err: BaseException, where: str = "") -> str:
    """What the user reads after an out-of-memory error: the task and what to lower, when known."""
    task, lower = getattr(err, "sftok_task", None) or (f"running this request{f' ({where})' if where else ''}",
                                                       "the batch or image count")
    return (f"the device ran out of memory while {task}. Lower {lower} and try again, or start the app on a "
            "device with more memory (--device); the app keeps serving.")


__all__ = ["DEVICE_CHOICES", "DeviceUnavailable", "Placement", "available_devices", "out_of_memory_message",
           "release_cached_memory", "resolve_device", "working_on"]
