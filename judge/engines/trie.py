"""The exact label scorer as a trie of one-token requests, for vLLM offline and a vLLM server.

log P(label + end of turn | chat) is a sum of next-token log-probabilities along the label's tokens. Scoring each
label's whole continuation with ``prompt_logprobs`` is exact but slow on vLLM: a request with ``prompt_logprobs``
skips the prefix cache (vLLM 0.32), so every label recomputes the whole chat with a full-vocabulary log-softmax at
every position. The labels' token lists (each + the end-of-turn token) form a trie; each trie node with children
is one ordinary request (chat + the node's path, ``max_tokens=1``) asking for the log-probabilities of that node's
next tokens only (``logprob_token_ids``). Ordinary requests read the prefix cache (the chat is computed once per
response, each node adds its few tokens), and vLLM's default logprobs are the raw model's, before temperature or
any processor, so the sums are exact: a label's log-probability is the sum over the nodes along its path.

With chehbouni2024's six labels (6 continuations, 17 tokens) the trie has 11 nodes: 11 one-token requests a
response instead of 6 full-chat scorings. The functions here are pure (token ids in, sums out); the engines
(judge/engines/vllm.py offline, judge/engines/openai.py over HTTP) send the requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from judge.engines.base import is_logprob

# vLLM 0.32 caps logprob_token_ids at 128 ids a request (sampling_params.MAX_LOGPROB_TOKEN_IDS)
MAX_TOKEN_IDS = 128
SCORER = "trie"
DESCRIPTION = (
    "exact (trie): one max_tokens=1 request per node of the labels' token trie (label + end of turn), each with "
    "logprob_token_ids = that node's next tokens; a label's log-probability is the sum along its path"
)


class Unsupported(str):
    """A reason that says the server does not answer ``logprob_token_ids`` (it ignored or refused the field), as
    opposed to a request that failed: the engine then scores by prompt_logprobs instead."""


@dataclass(frozen=True)
class Node:
    """A trie node: ``path`` the tokens after the chat, ``children`` the tokens that may follow them (sorted)."""

    path: tuple[int, ...]
    children: tuple[int, ...]


def build(continuations: Sequence[Sequence[int]]) -> list[Node]:
    """The nodes that have children, shallowest first (the root, the chat alone, first). Every continuation must be
    non-empty; continuations may share prefixes or repeat."""
    following: dict[tuple[int, ...], set[int]] = {}
    for continuation in continuations:
        tokens = tuple(int(t) for t in continuation)
        if not tokens:
            raise ValueError("a label's continuation has no tokens")
        for depth, token in enumerate(tokens):
            following.setdefault(tokens[:depth], set()).add(token)
    return [Node(path, tuple(sorted(following[path]))) for path in sorted(following, key=lambda p: (len(p), p))]


def fits(nodes: Sequence[Node]) -> bool:
    """Whether every node's next tokens fit in one request's logprob_token_ids."""
    return all(len(node.children) <= MAX_TOKEN_IDS for node in nodes)


def union(nodes: Sequence[Node]) -> list[int] | None:
    """Every node's next tokens together (for one HTTP request over all nodes); None when more than one request
    may ask for."""
    ids = sorted({t for node in nodes for t in node.children})
    return ids if len(ids) <= MAX_TOKEN_IDS else None


def path_sums(
    continuations: Sequence[Sequence[int]], node_logprobs: Mapping[tuple[int, ...], Mapping[int, float]]
) -> list[float] | str:
    """Each continuation's log-probability: the sum, along its path, of each node's log-probability of the next
    token; a reason when a node's answer lacks one (or it is not a log-probability)."""
    sums = []
    for continuation in continuations:
        tokens, total = tuple(int(t) for t in continuation), 0.0
        for depth, token in enumerate(tokens):
            value = node_logprobs.get(tokens[:depth], {}).get(token)
            if not is_logprob(value):
                return Unsupported(f"no log-probability for token {token} after {depth} label token(s)")
            total += float(value)
        sums.append(total)
    return sums


def score_rows(
    prefixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    run: Callable[[list[list[int]], list[Node]], list[Mapping[int, float] | str]],
) -> list[list[float] | str]:
    """Every row's continuation sums, all the rows' trie requests sent in ONE call of ``run`` (so the engine batches
    them: vLLM schedules them together and the chat's prefix is computed once). ``run(prompts, nodes)`` answers, for
    each prompt (a row's chat + a node's path), that node's next tokens' log-probabilities, or a reason it has none."""
    nodes = build(continuations)
    prompts = [list(prefix) + list(node.path) for prefix in prefixes for node in nodes]
    answers = run(prompts, [node for _ in prefixes for node in nodes])
    rows: list[list[float] | str] = []
    for i in range(len(prefixes)):
        mine = answers[i * len(nodes) : (i + 1) * len(nodes)]
        failed = next((a for a in mine if isinstance(a, str)), None)
        rows.append(
            failed if failed is not None else path_sums(continuations, {node.path: a for node, a in zip(nodes, mine)})  # type: ignore[misc]
        )
    return rows


# -- vLLM's answers ----------------------------------------------------------------------------------------------


def offline_answer(out: Any, node: Node) -> Mapping[int, float] | str:
    """The next tokens' log-probabilities in one offline ``RequestOutput`` (``outputs[0].logprobs[0]``: token id ->
    Logprob)."""
    samples = getattr(out, "outputs", None) or []
    steps = getattr(samples[0], "logprobs", None) if samples else None
    first = steps[0] if isinstance(steps, list) and steps else None
    if not isinstance(first, Mapping):
        return "vLLM returned no logprobs for a trie request"
    return {t: getattr(first.get(t), "logprob", None) for t in node.children if t in first}


def http_answer(choice: Any, node: Node) -> Mapping[int, float] | str:
    """The next tokens' log-probabilities in one ``/v1/completions`` choice asked with ``logprobs``,
    ``logprob_token_ids`` and ``return_tokens_as_token_ids`` (``logprobs.top_logprobs[0]``: "token_id:N" -> float).
    Whatever is missing or malformed is a reason, never a guess."""
    logprobs = getattr(choice, "logprobs", None)
    top = getattr(logprobs, "top_logprobs", None)
    first = top[0] if isinstance(top, list) and top else None
    if not isinstance(first, dict):
        return Unsupported("the server's answer has no top_logprobs for a trie request")
    found = {}
    for token in node.children:
        value = first.get(f"token_id:{token}")
        if value is not None:
            found[token] = value
    return found


def http_body(ids: Sequence[int]) -> dict[str, Any]:
    """What a ``/v1/completions`` request adds to ask vLLM for ``ids``' log-probabilities at the next position."""
    return {"logprob_token_ids": list(ids), "return_tokens_as_token_ids": True, "return_token_ids": True}


def check_echo(choices: Any, prompts: list[list[int]]) -> dict[int, Any] | str:
    """The choices by index, each for the prompt sent (vLLM echoes ``prompt_token_ids``); a reason otherwise."""
    if not isinstance(choices, list) or len(choices) != len(prompts):
        got = len(choices) if isinstance(choices, list) else "no"
        return f"the server answered {got} choices for {len(prompts)} prompts"
    by_index = {getattr(c, "index", None): c for c in choices}
    if set(by_index) != set(range(len(prompts))):
        return "the server's choices are not indexed 0..n-1"
    for i, prompt in enumerate(prompts):
        echoed = (getattr(by_index[i], "model_extra", None) or {}).get("prompt_token_ids")
        if echoed is not None and echoed != prompt:
            return "the server scored other tokens than the ones sent"
    return by_index


# -- over HTTP, through the openai engine's own request function ---------------------------------------------------


def groups(nodes: Sequence[Node]) -> list[list[int]]:
    """Node indices in groups whose next tokens together fit one request's logprob_token_ids (one group for any
    taxonomy of fewer than 128 distinct label tokens)."""
    out: list[list[int]] = []
    ids: set[int] = set()
    for i, node in enumerate(nodes):
        if out and len(ids | set(node.children)) <= MAX_TOKEN_IDS:
            out[-1].append(i)
            ids |= set(node.children)
        else:
            out.append([i])
            ids = set(node.children)
    return out


def served_request(engine: Any, prompts: list[list[int]], ids: Sequence[int]) -> tuple[Any, str | None]:
    """One ``/v1/completions`` request over token-id prompts asking for ``ids``' next-token log-probabilities, sent
    by the engine's request function (its retries, pacing, timeouts and error handling)."""
    return engine._call(
        lambda: engine.client.completions.create(
            model=engine.model,
            prompt=prompts,
            max_tokens=1,
            temperature=0.0,
            logprobs=1,
            extra_body=http_body(ids),
        )
    )


def served_scores(engine: Any, prefix: list[int], continuations: Sequence[Sequence[int]]) -> list[float] | str:
    """One row's continuation sums from the server: its trie's prompts in as few requests as the token cap allows
    (one for chehbouni2024: 11 prompts, one request, batched by the server). A reason instead where they fail; an
    ``Unsupported`` one where the server does not answer ``logprob_token_ids``."""

    def run(prompts: list[list[int]], nodes: list[Node]) -> list[Mapping[int, float] | str]:
        answers: list[Mapping[int, float] | str] = [""] * len(prompts)
        for group in groups(nodes):
            sent = [prompts[i] for i in group]
            ids = sorted({t for i in group for t in nodes[i].children})
            response, error = served_request(engine, sent, ids)
            if error:  # a server that refuses the field (400, 422) does not answer it; anything else failed
                refused = error.startswith(("HTTP 400", "HTTP 422"))
                return [Unsupported(error) if refused else error] * len(prompts)
            engine._count_usage(response)
            choices = check_echo(getattr(response, "choices", None), sent)
            if isinstance(choices, str):
                return [choices] * len(prompts)
            for k, i in enumerate(group):
                answers[i] = http_answer(choices[k], nodes[i])
        return answers

    return score_rows([prefix], continuations, run)[0]
