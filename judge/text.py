"""How a (prompt, response) pair is shown to a trained judge.

Names are masked by default: a judge used to compare groups must not be able to condition its
label on the name that signals the group.
"""
from __future__ import annotations

import re

NAME_PLACEHOLDER = "[NAME]"


def mask_name(text: str, name: str | None) -> str:
    if not name or not isinstance(name, str) or not name.strip():
        return text
    return re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", NAME_PLACEHOLDER, text)


def judge_inputs(prompts, responses, names=None, *, mask_names: bool = True) -> tuple[list[str], list[str]]:
    names = list(names) if names is not None and mask_names else [None] * len(responses)
    masked_p = [mask_name(str(p), n) for p, n in zip(prompts, names)]
    masked_r = [mask_name(str(r), n) for r, n in zip(responses, names)]
    return masked_p, masked_r
