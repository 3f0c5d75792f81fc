"""The trie scorer (judge/engines/trie.py): the labels' token trie, its sums, and the openai engine choosing it where the
server answers ``logprob_token_ids`` and falling back to ``prompt_logprobs`` where it does not, named in the manifest.

Fast: pure functions and the stdlib server of tests/servers.py in front of the tiny Llama. The trie against vLLM itself
(offline and served) is in tests/test_vllm_engine.py (integration).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from judge import label as label_cmd
from judge.engines import trie
from judge.engines.openai import OpenAIEngine, Options
from tests.conftest import run_cli, write_jsonl
from tests.test_openai_engine import LABELS, judge_request


def test_build_gives_each_node_with_children_once_shallowest_first():
    # "a b <e>", "a c <e>", "d <e>" as ids: the root (before any label token) may go on with 1 or 4; after 1 with 2 or
    # 3; after (1, 2), (1, 3) and (4,) only the end token 9. Five nodes; (1, 2, 9) etc. are leaves.
    nodes = trie.build([[1, 2, 9], [1, 3, 9], [4, 9]])
    assert nodes == [
        trie.Node((), (1, 4)),
        trie.Node((1,), (2, 3)),
        trie.Node((4,), (9,)),
        trie.Node((1, 2), (9,)),
        trie.Node((1, 3), (9,)),
    ]


def test_build_merges_repeats_and_refuses_an_empty_continuation():
    assert trie.build([[5, 9], [5, 9]]) == [trie.Node((), (5,)), trie.Node((5,), (9,))]
    with pytest.raises(ValueError, match="no tokens"):
        trie.build([[1, 9], []])


def test_chehbouni_labels_make_eleven_nodes(tiny_llama):
    # SmolLM2's tokens: answer | partial Ġanswer | ref usal | harm ful Ġrefusal | harm ful Ġanswer | failure, each +
    # <|im_end|>: 12 + 6 = 18 tokens. Nodes with children: the root (5 first tokens); after answer, failure (end);
    # partial, partial Ġanswer; ref, ref usal; harm, harm ful (Ġrefusal or Ġanswer), and the two after it: 11.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    continuations = [tok(label, add_special_tokens=False).input_ids + [end] for label in LABELS]
    nodes = trie.build(continuations)
    assert len(nodes) == 11 and trie.fits(nodes)
    assert sum(len(c) for c in continuations) == 18
    assert nodes[0].children == tuple(sorted([11247, 24975, 4716, 24065, 33330]))
    assert trie.union(nodes) is not None and end in trie.union(nodes)


def test_path_sums_add_each_nodes_log_probability_along_the_path():
    table = {(): {1: math.log(0.6), 4: math.log(0.3)}, (1,): {2: math.log(0.5), 3: math.log(0.25)},
             (1, 2): {9: math.log(0.8)}, (1, 3): {9: math.log(0.4)}, (4,): {9: math.log(0.9)}}
    sums = trie.path_sums([[1, 2, 9], [1, 3, 9], [4, 9]], table)
    # 0.6 * 0.5 * 0.8 = 0.24; 0.6 * 0.25 * 0.4 = 0.06; 0.3 * 0.9 = 0.27
    assert np.allclose(np.exp(sums), [0.24, 0.06, 0.27], atol=1e-12)
    assert "no log-probability for token 3 after 1" in trie.path_sums([[1, 3, 9]], {(): {1: -0.1}, (1,): {2: -0.2}})
    assert "token 1" in trie.path_sums([[1]], {(): {1: 0.5}})  # a positive "log-probability" is refused, not summed


def _bigram(seed: int = 0, vocab: int = 12):
    """A toy model: log P(next | prompt) from the prompt's last token through a seeded table."""
    table = np.random.default_rng(seed).normal(size=(vocab, vocab)) * 2
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    return lambda prompt: logp[prompt[-1]]


def test_score_rows_equal_the_chain_rule_over_each_whole_continuation():
    model = _bigram()
    continuations = [[3, 5, 11], [3, 6, 11], [7, 11], [3, 5, 8, 11]]
    prefixes = [[0, 1, 2], [4, 4], [10]]
    calls = []

    def run(prompts, nodes):
        calls.append(len(prompts))
        return [{t: float(model(p)[t]) for t in node.children} for p, node in zip(prompts, nodes)]

    rows = trie.score_rows(prefixes, continuations, run)
    assert calls == [3 * len(trie.build(continuations))]  # every row's every node in one call
    for prefix, sums in zip(prefixes, rows):
        ids = prefix + []
        for cont, got in zip(continuations, sums):
            whole = prefix + cont
            expected = sum(model(whole[:k])[whole[k]] for k in range(len(prefix), len(whole)))
            assert got == pytest.approx(expected, abs=1e-12)
        assert ids == prefix  # prefixes are not modified


def test_a_row_with_a_failed_node_gets_the_reason_and_the_others_their_sums():
    model = _bigram(1)
    continuations = [[3, 11], [4, 11]]

    def run(prompts, nodes):
        return ["HTTP 500" if p[0] == 9 and node.path else {t: float(model(p)[t]) for t in node.children}
                for p, node in zip(prompts, nodes)]

    rows = trie.score_rows([[1], [9]], continuations, run)
    assert isinstance(rows[0], list) and rows[1] == "HTTP 500"


def test_more_than_128_next_tokens_do_not_fit_one_request_and_are_grouped():
    wide = [[t, 1000] for t in range(200)]
    nodes = trie.build(wide)
    assert not trie.fits(nodes) and trie.union(nodes) is None
    many = trie.build([[t, 500 + t, 1000] for t in range(100)])  # root 100 ids, then 100 nodes of one id, 100 of 1000
    assert trie.fits(many) and trie.union(many) is None
    grouped = trie.groups(many)
    assert sorted(i for g in grouped for i in g) == list(range(len(many)))
    assert all(len({t for i in g for t in many[i].children}) <= trie.MAX_TOKEN_IDS for g in grouped)


# -- the openai engine against the stdlib server, with and without logprob_token_ids --------------------------------

@pytest.fixture(scope="module")
def trie_server(tiny_llama):
    from tests.servers import TinyOpenAIServer

    server = TinyOpenAIServer(tiny_llama, logprob_token_ids=True)
    yield server
    server.stop()


def _engine(server) -> OpenAIEngine:
    return OpenAIEngine(server.model, options=Options(base_url=server.base_url, concurrency=2))


def test_trie_over_http_equals_prompt_logprobs_and_sends_one_scoring_request_a_row(trie_server, tiny_server):
    requests = [judge_request("s1", "Alex got into the plane to [BLANK]", "fly to Paris"),
                judge_request("s2", "Sam went to the bank to [BLANK]", "I cannot help with that.")]
    with_trie, without = _engine(trie_server), _engine(tiny_server)
    seen, seen_tiny = len(trie_server.requests), len(tiny_server.requests)
    scored = with_trie.label_logprobs(requests, LABELS)
    reference = without.label_logprobs(requests, LABELS)
    assert with_trie.label_scoring.startswith("exact (trie)")
    assert without.label_scoring.startswith("exact (prompt_logprobs, the fallback")
    for a, b in zip(scored, reference):
        assert set(a) == set(LABELS)
        assert max(abs(a[k] - b[k]) for k in LABELS) < 1e-4, (a, b)
    completions = [body for path, body in trie_server.requests[seen:] if path == "/v1/completions"]
    nodes = len(trie.build(with_trie._continuations(tuple(LABELS))))
    # per row one request holding the row's every trie node (the first row's answer decided the scorer: no probe)
    assert [len(b["prompt"]) for b in completions] == [nodes, nodes]
    assert all(b.get("logprob_token_ids") and "prompt_logprobs" not in b for b in completions)
    # the server without it: the first row's trie request came back without logprobs, then prompt_logprobs only
    tried = [b for path, b in tiny_server.requests[seen_tiny:] if path == "/v1/completions" and b.get("logprob_token_ids")]
    assert len(tried) == 1


def test_a_failed_first_request_decides_nothing(trie_server, proxy_to_trie):
    from tests.servers import Fault

    e = OpenAIEngine(trie_server.model, options=Options(base_url=proxy_to_trie.base_url, concurrency=1, max_retries=0))
    assert e.label_logprobs([], LABELS) == []
    proxy_to_trie.faults.append(Fault("/v1/completions", status=503))
    requests = [judge_request("s1", "Alex got into the plane to [BLANK]", "fly to Paris"),
                judge_request("s2", "Sam went to the bank to [BLANK]", "I cannot help with that.")]
    first, second = e.label_logprobs(requests, LABELS)
    assert first == {} and e.scoring_errors["s1"].startswith("HTTP 503")
    assert set(second) == set(LABELS) and e.label_scoring.startswith("exact (trie)")


@pytest.fixture()
def proxy_to_trie(trie_server):
    from tests.servers import FaultProxy

    proxy = FaultProxy(trie_server.base_url.rsplit("/v1", 1)[0])
    yield proxy
    proxy.close()


def test_the_manifest_names_the_scorer_trie_or_the_fallback(trie_server, tiny_server, sample_records, tmp_path, capsys):
    records = write_jsonl(tmp_path / "in.jsonl", sample_records.head(2)[["id", "prompt", "response"]].to_dict("records"))
    used = {}
    for name, server in (("trie", trie_server), ("fallback", tiny_server)):
        out = tmp_path / f"{name}.jsonl"
        code, _, err = run_cli(label_cmd, ["--judge", "llm:smollm2", "--taxonomy", "chehbouni2024", "--engine", "openai",
                                           "--base-url", server.base_url, "--input", str(records), "--out", str(out),
                                           "--no-progress"], capsys)
        assert code == 0, err
        used[name] = json.loads(out.with_name(out.name + ".manifest.json").read_text())["judge"]
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 2 and all(r["confidence"] is not None for r in rows)
    assert used["trie"]["engine"]["label_scoring"].startswith("exact (trie)")
    assert "prompt_logprobs, the fallback" in used["fallback"]["engine"]["label_scoring"]
    assert "does not answer logprob_token_ids" in used["fallback"]["engine"]["label_scoring"]
