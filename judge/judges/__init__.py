"""Judge registry: a spec string resolves to a judge.

Specs: ``DIR`` (a trained judge directory; its judge.json says which backend loads it),
``lora:DIR``, ``tfidf:DIR``, ``rules`` (needs a taxonomy), ``llm`` or ``llm:MODEL``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from judge.core.errors import UserError
from judge.judges.base import Item, Judge, Judgement, probability_column
from judge.core.taxonomy import Taxonomy, load_taxonomy

__all__ = ["Item", "Judge", "Judgement", "load_judge", "probability_column"]


def load_judge(spec: str, *, taxonomy: str | Taxonomy | None = None, **options: Any) -> Judge:
    """Options reach the backend that takes them (device, precision, quantize, examples, shots ...)."""
    kind, _, arg = spec.partition(":")
    if kind not in ("lora", "tfidf", "ensemble", "rules", "llm"):
        kind, arg = "dir", spec
    tax = load_taxonomy(taxonomy) if isinstance(taxonomy, (str, Path)) else taxonomy
    if kind == "rules":
        from judge.judges.rules import RulesJudge

        return RulesJudge(tax or load_taxonomy("chehbouni2024"))
    if kind == "llm":
        from judge.judges.llm import LLMJudge

        llm_options = ("device", "examples", "examples_label_column", "shots", "similar_examples", "rationale", "mode", "seed", "prompt_template", "max_new_tokens")
        return LLMJudge(model=arg or None, taxonomy=tax or load_taxonomy("chehbouni2024"),
                        **{k: v for k, v in options.items() if k in llm_options and v is not None})
    directory = Path(arg)
    if not directory.is_dir():
        raise UserError(f"judge {spec!r} is neither a judge directory nor a known spec; use DIR, tfidf:DIR, rules, llm or llm:MODEL")
    from judge.judges.trained import LoraJudge, TfidfJudge, read_judge_json

    stored = read_judge_json(directory)["kind"]
    if kind not in ("dir", stored):
        raise UserError(f"{directory} holds a {stored} judge, not {kind}; use --judge {directory} or {stored}:{directory}")
    if stored == "lora":
        judge = LoraJudge(directory, **{k: v for k, v in options.items() if k in ("device", "precision", "quantize", "max_length", "verbose")})
    elif stored == "tfidf":
        judge = TfidfJudge(directory)
    elif stored == "ensemble":
        from judge.judges.ensemble import EnsembleJudge

        judge = EnsembleJudge(directory, **{k: v for k, v in options.items() if k in ("device", "precision", "quantize", "max_length", "verbose")})
    else:
        raise UserError(f"{directory}/judge.json names unknown kind {stored!r}")
    if tax is not None and tax.labels != judge.taxonomy.labels:
        raise UserError(f"--taxonomy {tax.name} ({', '.join(tax.labels)}) differs from the one {directory} was trained on "
                        f"({', '.join(judge.taxonomy.labels)}); a trained judge carries its own taxonomy: drop --taxonomy")
    return judge
