"""Which numeric precision a trained judge runs in: fp32, bf16 or int8, chosen by measurement.

Reduced precision changes labels, and by how much depends on the judge: int8 changed 6% of the
default MiniLM judge's labels, bf16 0.15% (issue 22). So training measures each reduced precision
against fp32 on the judge's own validation split (topped up with training texts to 200 when it is
smaller; see training.lora.texts_to_check) and records the result in judge.json (``RECORD``):

    "precision": {"reference": "fp32", "checked_on": 346, "split": "validation", "device": "cpu",
                  "tolerance": {"labels_equal": 0.995, "mean_abs_prob_diff": 0.005},
                  "bf16": {"labels_equal": 0.9971, "max_abs_prob_diff": 0.0123, "mean_abs_prob_diff": 0.0005,
                           "passed": true},
                  "int8": {"labels_equal": 0.936, "max_abs_prob_diff": 0.40, "mean_abs_prob_diff": 0.015,
                           "passed": false}}

Only shares and differences are stored, never a text. ``--precision auto`` takes the fastest
precision that passed and that this machine runs natively (bf16 where the CPU has AMX or AVX-512
BF16, or on a GPU with bf16; int8 on CPU), else fp32. A judge without the record (trained before
the check existed) runs in fp32 unless the user names a precision.

What each precision is, on CPU: fp32 as trained; bf16 stores the Linear weights in bf16 and runs
them under ``torch.autocast`` while embeddings, LayerNorm, the residual stream and the classifier
head stay fp32 (measured on the AMX Xeon: as fast as casting the whole model to bf16 and as faithful
as autocast over fp32 weights, which the whole-model cast is not); int8 is dynamic quantization with
per-channel weights, the classifier, pooler and last layer kept fp32. On a GPU bf16 is the model in
bf16, as GPUs run it.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.core.errors import UserError

PRECISIONS = ("fp32", "bf16", "int8")
CHOICES = ("auto", *PRECISIONS)
RECORD = "precision"  # the judge.json key
REFERENCE = "fp32"
# A reduced precision passes when it gives fp32's label for at least 99.5% of the validation texts
# and its probabilities differ from fp32's by at most 0.005 on average (over texts and categories):
# measured on the MiniLM judge, bf16 0.0003-0.0009 and int8 0.006-0.02.
LABELS_EQUAL_MIN = 0.995
MEAN_ABS_PROB_DIFF_MAX = 0.005
# flags of /proc/cpuinfo that decide the paths (and that the manifest records)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# -- the machine -------------------------------------------------------------------------------


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the flags that matter here (Linux /proc/cpuinfo; torch's own probes elsewhere)."""
    model, flags = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model is None:
                model = value.strip()
            elif key == "flags" and flags is None:
                flags = set(value.split())
    except OSError:
        pass
    if flags is None:
        flags = _torch_cpu_flags()
    if model is None:
        import platform

        model = platform.processor() or platform.machine() or "unknown CPU"
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags]}


def _torch_cpu_flags() -> set[str]:
    import torch

    probes = {
        "avx2": "_is_avx2_supported",
        "avx512f": "_is_avx512_supported",
        "avx512_vnni": "_is_vnni_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_tile": "_is_amx_tile_supported",
    }
    found = {flag for flag, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()}
    return found | ({"amx_bf16"} if "amx_tile" in found else set())


def native(device) -> list[str]:
    """The precisions this device runs natively, fastest first (fp32 always last)."""
    if device.type == "cuda":
        import torch

        return ["bf16", "fp32"] if torch.cuda.is_bf16_supported() else ["fp32"]
    if device.type != "cpu":
        return ["fp32"]
    flags = set(cpu_info()["flags"])
    # bf16 first where the CPU has bf16 units (2.6x fp32 on the AMX Xeon); int8 beats fp32 elsewhere (1.3-1.5x)
    return (["bf16"] if flags & set(NATIVE_BF16_FLAGS) else []) + ["int8", "fp32"]


# -- the judge directory's record -------------------------------------------------------------


def read_record(meta: dict, where: str | Path) -> dict | None:
    """judge.json's faithfulness record, checked for shape (None when the judge predates it)."""
    record = meta.get(RECORD)
    if record is None:
        return None
    name = Path(where).name
    bad = UserError(
        f"{name}/judge.json: '{RECORD}' is not a faithfulness record as training writes it; retrain the judge"
    )
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("checked_on"), int)
        or isinstance(record.get("checked_on"), bool)
    ):
        raise bad
    for precision in PRECISIONS[1:]:
        entry = record.get(precision)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("passed"), bool):
            raise bad
        for key in ("labels_equal", "max_abs_prob_diff", "mean_abs_prob_diff"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise bad
    return record


def passed(record: dict | None) -> set[str]:
    """The precisions a record lets auto use: fp32 always, the others when they passed."""
    return {REFERENCE} | {p for p in PRECISIONS[1:] if (record or {}).get(p, {}).get("passed") is True}


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str

    def line(self) -> str:
        return f"precision: {self.precision} ({self.reason})"


def choose(requested: str, *, device, record: dict | None) -> Choice:
    """Resolve --precision for a judge with this faithfulness record on this device, once per run."""
    if requested not in CHOICES:
        raise UserError(f"--precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == "int8" and device.type != "cpu":
        raise UserError("int8 inference runs on CPU only; use --precision bf16 or fp32 on a GPU, or --device cpu")
    here = native(device)
    if requested != "auto":
        slow = requested == "bf16" and requested not in here
        return Choice(
            requested,
            "asked for"
            + (" (this CPU has no bf16 units: it runs, slowly)" if slow else "")
            + _check_note(requested, record),
        )
    if record is None:
        return Choice(
            REFERENCE,
            "auto: the judge records no faithfulness check (trained before it existed); --precision bf16 or int8 to "
            "override",
        )
    ok = passed(record)
    pick = next(p for p in here if p in ok)
    failed = [p for p in here if p not in ok]
    why = (
        f"auto: fastest here of those that label as fp32 does on the judge's {record['checked_on']} "
        f"{record.get('split', 'validation')} texts"
    )
    return Choice(pick, why + (f"; {', '.join(failed)} failed the check" if failed else ""))


def _check_note(precision: str, record: dict | None) -> str:
    entry = (record or {}).get(precision)
    if precision == REFERENCE or not entry:
        return ""
    return f"; the judge's check: labels equal to fp32 {100 * entry['labels_equal']:.1f}%" + (
        "" if entry["passed"] else ", FAILED"
    )


def choose_for(directory: Path | None, requested: str, device_spec: str, *, spec: str) -> Choice | None:
    """The precision a ``judge.label --judge SPEC`` run uses, resolved before loading, from the LoRA
    directory whose record decides (the registry's ``precision_directory``; None: no LoRA part)."""
    from judge.core.devices import pick_device
    from judge.kinds.judge_dir import verify

    if directory is None:
        if requested != "auto":
            raise UserError(
                f"--precision applies to LoRA judges (and ensembles with a lora member), not --judge {spec}; drop it"
            )
        return None
    device, _ = pick_device(device_spec)
    return choose(requested, device=device, record=read_record(verify(directory), directory))


def say(choice: Choice) -> None:
    print(choice.line(), file=sys.stderr)


# -- the model in each precision ---------------------------------------------------------------


def weights_dtype(precision: str, device):
    """The dtype a merged model is loaded (and cached) in for this precision."""
    import torch

    return torch.bfloat16 if precision == "bf16" and device.type == "cuda" else torch.float32


def prepare(model, precision: str, device):
    """The merged fp32 (or, on a GPU, bf16) model turned into the ``precision`` path; see the module docstring."""
    if precision == "int8":
        return int8(model)
    if precision == "bf16" and device.type == "cpu":
        return bf16_linear_weights(model)
    return model


def head_names(model) -> set[str]:
    """Linear layers kept at full precision: the classifier head, the pooler, and the last layer."""
    import torch

    layers = _encoder_layers(model)
    last = f"{layers}.{len(_get(model, layers)) - 1}." if layers else None
    return {
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and (n.startswith(("classifier", "score", "bert.pooler")) or (last and n.startswith(last)))
    }


def _encoder_layers(model) -> str | None:
    for path in ("bert.encoder.layer", "model.layers"):
        if _get(model, path) is not None:
            return path
    return None


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def int8(model):
    import torch

    keep = head_names(model)
    spec = {
        n: torch.ao.quantization.per_channel_dynamic_qconfig
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n not in keep
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices; the kernels are what we want
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def bf16_linear_weights(model):
    """Linear weights (not the head's) in bf16, so autocast does not cast them again on every call."""
    import torch

    keep = {n for n in head_names(model) if n.startswith(("classifier", "score"))}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name not in keep:
            module.to(torch.bfloat16)
    for name in keep:
        _full_precision_head(_get(model, name))
    return model


def _full_precision_head(linear) -> None:
    import functools

    import torch

    def forward(layer, x):
        with torch.autocast("cpu", enabled=False):
            return torch.nn.functional.linear(x.float(), layer.weight, layer.bias)

    linear.forward = functools.partial(forward, linear)


def context(precision: str, device):
    """What the forward pass runs under: autocast for bf16 on CPU, nothing otherwise."""
    import torch

    if precision == "bf16" and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- the check at training time ----------------------------------------------------------------


def faithfulness(reference, candidate) -> dict[str, Any]:
    """How closely a precision's probabilities (rows of texts) follow fp32's, and whether it passes."""
    import numpy as np

    reference, candidate = np.asarray(reference, dtype=float), np.asarray(candidate, dtype=float)
    diff = np.abs(candidate - reference)
    equal = float((candidate.argmax(axis=1) == reference.argmax(axis=1)).mean()) if len(reference) else 1.0
    mean = float(diff.mean()) if diff.size else 0.0
    return {
        "labels_equal": round(equal, 6),
        "max_abs_prob_diff": round(float(diff.max()) if diff.size else 0.0, 6),
        "mean_abs_prob_diff": round(mean, 6),
        "passed": bool(len(reference)) and equal >= LABELS_EQUAL_MIN and mean <= MEAN_ABS_PROB_DIFF_MAX,
    }


def check_precisions(merged, probabilities, *, device, n: int, split: str) -> dict[str, Any]:
    """The judge.json record: ``probabilities(model, precision)`` of each reduced precision against fp32's.

    ``merged`` is the inference model in fp32 (adapter merged, on ``device``); each precision gets
    its own copy. int8 is checked on CPU only (it runs nowhere else).
    """
    reference = probabilities(merged, REFERENCE)
    record: dict[str, Any] = {
        "reference": REFERENCE,
        "checked_on": int(n),
        "split": split,
        "device": device.type,
        "tolerance": {"labels_equal": LABELS_EQUAL_MIN, "mean_abs_prob_diff": MEAN_ABS_PROB_DIFF_MAX},
    }
    for precision in ("bf16", "int8") if device.type == "cpu" else ("bf16",):
        candidate = prepare(copy.deepcopy(merged).to(weights_dtype(precision, device)), precision, device)
        record[precision] = faithfulness(reference, probabilities(candidate, precision))
    return record


def summary(record: dict) -> str:
    parts = [
        f"{p} {100 * record[p]['labels_equal']:.1f}% labels equal, mean |dp| {record[p]['mean_abs_prob_diff']:.4f} "
        f"({'passed' if record[p]['passed'] else 'failed'})"
        for p in PRECISIONS[1:]
        if p in record
    ]
    return f"precision check on {record['checked_on']} {record['split']} texts vs fp32: " + "; ".join(parts)
