"""Which device a run uses: the flags' forms checked against what this machine has (torch imported only when asked)."""

from __future__ import annotations

from judge.core.errors import UserError


def check_device_available(spec: str) -> None:
    """A device this machine has: cuda (or cuda:N within the visible GPUs), mps on Apple silicon, cpu."""
    import torch

    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec} asked for, but no GPU is visible; use --device cpu or auto")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: only {torch.cuda.device_count()} GPU(s) are visible (cuda:0 ...); pick one of them "
                "or auto"
            )
    elif spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(
            "--device mps asked for, but Apple's MPS backend is not available here; use --device cpu or auto"
        )
    elif spec not in ("cpu", "mps"):
        raise UserError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {spec[:40]!r}")


def pick_device(spec: str):
    """(device, dtype) for ``--device``: auto is a GPU with bf16 where one is visible, else the CPU in fp32."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    check_device_available(spec)
    device = torch.device(spec)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return device, (torch.bfloat16 if bf16 else torch.float32)
