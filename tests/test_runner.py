"""The runner itself: fixed plans, shares, the checkpoint's "a batch counts only when whole", and engine flags."""
import argparse
import dataclasses
import hashlib
import json
import pickle
import sys
import types

import pytest

from judge.core.errors import UserError
from judge.core.records import JsonlCheckpoint
from judge.run.runner import Batch, InProcess, Shard, fixed_plan, plan_fingerprint, run_plan


class Doubler:
    """A worker that records which batches it computed."""

    def __init__(self):
        self.seen = []

    def compute(self, batch):
        self.seen.append(batch.number)
        return [{"key": k, "twice": 2 * ITEMS[v]} for k, v in zip(batch.keys, batch.items)]


ITEMS = {"a": 5, "b": 1, "c": 3, "d": 1, "e": 4, "f": 2, "g": 9}


def plan(batch_size=2):
    return fixed_plan(ITEMS, key=str, size=ITEMS.get, batch_size=batch_size)


def test_fixed_plan_sorts_by_size_then_key():
    # sizes: b1 d1 f2 c3 e4 a5 g9 -> batches of 2 in that order, numbered from 0
    assert [b.keys for b in plan()] == [("b", "d"), ("f", "c"), ("e", "a"), ("g",)]
    assert [b.number for b in plan()] == [0, 1, 2, 3]
    assert plan_fingerprint(plan()) == hashlib.sha256(json.dumps([["b", "d"], ["f", "c"], ["e", "a"], ["g"]]).encode()).hexdigest()
    assert plan_fingerprint(plan(3)) != plan_fingerprint(plan(2))


@pytest.mark.parametrize("text,index,count", [("1/1", 1, 1), ("2/3", 2, 3), (" 3/3 ", 3, 3)])
def test_shard_parses_one_based(text, index, count):
    assert Shard.parse(text) == Shard(index, count) and str(Shard.parse(text)) == f"{index}/{count}"


@pytest.mark.parametrize("text,fragment", [("0/2", "from 1 to 2"), ("3/2", "from 1 to 2"), ("1/0", "N must be 1 or more"),
                                           ("a/b", "is not I/N"), ("1-2", "is not I/N"), ("-1/2", "is not I/N"), ("1/2/3", "is not I/N")])
def test_shard_out_of_range_or_malformed_is_refused(text, fragment):
    with pytest.raises(UserError, match=fragment):
        Shard.parse(text)


def test_shares_are_a_round_robin_over_the_plan_and_cover_it_once():
    whole = plan()  # 4 batches
    shares = {i: [b.number for b in Shard(i, 3).share(whole)] for i in (1, 2, 3)}
    assert shares == {1: [0, 3], 2: [1], 3: [2]}  # number % 3 == i - 1
    assert sorted(n for s in shares.values() for n in s) == [0, 1, 2, 3]
    assert [b.number for b in Shard(5, 5).share(whole)] == []  # more shares than batches: an empty share


def test_run_plan_computes_only_the_share_and_reports_the_whole_plan(tmp_path):
    worker = Doubler()
    result = run_plan(plan(), lambda: worker, key_column="key", shard=Shard(2, 2), progress=False)
    assert worker.seen == [1, 3]
    assert result.rows == {"f": {"key": "f", "twice": 4}, "c": {"key": "c", "twice": 6}, "g": {"key": "g", "twice": 18}}
    assert result.computed_keys == ["f", "c", "g"] and result.plan == plan_fingerprint(plan()) and result.shard == Shard(2, 2)


def test_a_batch_counts_only_when_whole_in_the_checkpoint(tmp_path):
    checkpoint = JsonlCheckpoint(tmp_path / "c.jsonl")
    # batch 0 whole, batch 1 cut (only "f", with a wrong value): batch 1 is computed again whole, its new copy wins
    checkpoint.append([{"key": "b", "twice": 2}, {"key": "d", "twice": 2}, {"key": "f", "twice": -1}])
    worker = Doubler()
    result = run_plan(plan(), lambda: worker, key_column="key", checkpoint=checkpoint, progress=False)
    assert worker.seen == [1, 2, 3]
    assert result.rows["f"] == {"key": "f", "twice": 4} and result.computed == 5
    assert [r["key"] for r in checkpoint.rows()] == ["b", "d", "f", "f", "c", "e", "a", "g"]
    again = Doubler()
    assert run_plan(plan(), lambda: again, key_column="key", checkpoint=checkpoint, progress=False).computed == 0 and again.seen == []


def test_rows_come_back_as_the_checkpoint_would_give_them():
    import numpy as np

    class Typed:
        def compute(self, batch):
            return [{"key": k, "n": np.int64(3), "x": float("nan"), "t": (1, 2)} for k in batch.keys]

    rows = run_plan(plan(7), Typed, key_column="key", progress=False).rows
    assert rows["a"] == {"key": "a", "n": 3, "x": None, "t": [1, 2]} and type(rows["a"]["n"]) is int


def test_a_worker_that_returns_other_keys_is_a_bug_not_a_row():
    class Shuffles:
        def compute(self, batch):
            return [{"key": k} for k in reversed(batch.keys)]

    with pytest.raises(RuntimeError, match="batch 0"):
        run_plan(plan(), Shuffles, key_column="key", progress=False)


def test_in_process_builds_its_worker_once_when_none_is_given():
    built = []

    def make():
        built.append(Doubler())
        return built[-1]

    run_plan(plan(), make, key_column="key", executor=InProcess(), progress=False)
    assert len(built) == 1 and built[0].seen == [0, 1, 2, 3]


def test_judge_worker_pickles_and_labels_like_the_judge(tmp_path, sample_records):
    from judge.kinds import load_judge
    from judge.kinds.base import JudgeWorker, RowOptions, labelling_items

    make = JudgeWorker("rules", taxonomy="chehbouni2024", row_options=RowOptions(abstain_below=0.5, prefix="r_"))
    rebuilt = pickle.loads(pickle.dumps(make))()  # what a Ray actor does with it
    records = sample_records.head(12).drop(columns=["label"])
    items, _ = labelling_items(records)
    batch = Batch(0, tuple(i.id for i in items), tuple(items))
    judge = load_judge("rules", taxonomy="chehbouni2024")
    expected = judge.label(records, abstain_below=0.5, prefix="r_", progress=False)
    got = rebuilt.compute(batch)
    assert [r["r_label"] for r in got] == expected["r_label"].tolist()
    assert "r_unscored_reason" in got[0] and rebuilt.row_options.prefix == "r_"


# -- engine options: one flag per Options field, refused for another engine -----------------------

@dataclasses.dataclass
class FakeServerOptions:
    fake_url: str = dataclasses.field(default="http://localhost:8000", metadata={"help": "the server"})
    max_concurrency: int = dataclasses.field(default=8, metadata={"help": "requests in flight"})
    api_key: str | None = dataclasses.field(default=None, metadata={"help": "the key (or $KEY)"})
    stream: bool = dataclasses.field(default=False, metadata={"help": "stream tokens"})


@pytest.fixture()
def fake_server_engine(monkeypatch):
    from judge import engines
    from judge.engines.base import Engine

    module = types.ModuleType("fake_server_engine")
    module.Options = FakeServerOptions

    class FakeServer(Engine):
        name = "fake"

        def __init__(self, model, *, device="auto", options=None):
            self.model, self.options = model, options

    module.FakeServer = FakeServer
    monkeypatch.setitem(sys.modules, "fake_server_engine", module)
    monkeypatch.setitem(engines.ENGINES, "fake", "fake_server_engine")
    return module


def parse(argv):
    from judge.core.config import new_parser
    from judge.engines import add_engine_arguments

    parser = new_parser("test", None)
    add_engine_arguments(parser)
    return vars(parser.parse_args(argv))


def test_engine_flags_come_from_each_engines_options(fake_server_engine):
    from judge.engines import engine_options, open_engine, public_options

    given = parse(["--fake-url", "http://h:1", "--max-concurrency", "3", "--api-key", "sk-secret", "--stream"])
    assert given == {"engine_options": {"fake_url": "http://h:1", "max_concurrency": 3, "api_key": "sk-secret", "stream": True}}
    options = engine_options("fake", given["engine_options"])
    assert options == FakeServerOptions("http://h:1", 3, "sk-secret", True)
    assert public_options(options) == {"fake_url": "http://h:1", "max_concurrency": 3, "stream": True}  # the key never reaches a manifest
    assert open_engine("fake", "m", options=options).options is options
    assert parse([]) == {}  # nothing given, nothing set: the Config's defaults hold


def test_a_flag_of_another_engine_is_refused_in_one_line(fake_server_engine):
    from judge.engines import engine_options

    with pytest.raises(UserError, match=r"--fake-url is an option of --engine fake, not hf; drop it or pass --engine fake"):
        engine_options("hf", {"fake_url": "http://h:1"})
    with pytest.raises(UserError, match=r"engine option 'colour' is unknown; --engine fake takes --fake-url"):
        engine_options("fake", {"colour": "red"})
    with pytest.raises(UserError, match=r"--api-key must be text, got int") as refused:  # from a config file: typed, value unsaid
        engine_options("fake", {"api_key": 12345})
    assert "12345" not in str(refused.value)


def test_engine_help_names_the_engine(fake_server_engine):
    from judge.core.config import new_parser
    from judge.engines import add_engine_arguments

    parser = new_parser("test", None)
    add_engine_arguments(parser)
    text = parser.format_help()
    assert "requests in flight (--engine fake)" in text and isinstance(parser, argparse.ArgumentParser)


# -- python -m generation refuses a bad --shard or engine flag before it loads anything -------------

GENERATION_CASES = [
    ("shard 3/2", ["--shard", "3/2"], ["--shard 3/2 is out of range", "from 1 to 2"]),
    ("shard 0/2", ["--shard", "0/2"], ["--shard 0/2 is out of range"]),
    ("shard a/b", ["--shard", "a/b"], ["--shard 'a/b' is not I/N", "e.g. --shard 1/4"]),
    ("unknown engine", ["--engine", "nope"], ["unknown --engine 'nope'", "use one of hf"]),
    ("another engine's flag", ["--fake-url", "http://h:1"], ["--fake-url is an option of --engine fake, not hf", "pass --engine fake"]),
    ("another engine's secret", ["--api-key", "sk-do-not-print"], ["--api-key is an option of --engine fake, not hf"]),
]


@pytest.mark.parametrize("case,extra,fragments", GENERATION_CASES, ids=[c[0] for c in GENERATION_CASES])
def test_generation_refuses(fake_server_engine, tmp_path, capsys, case, extra, fragments):
    from generation import __main__ as generate_cmd
    from tests.badinput import assert_refused

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "1", "prompt": "Omar went to [BLANK]"}) + "\n")
    line = assert_refused(generate_cmd, ["--prompts", str(prompts), *extra, "--out", str(tmp_path / "o.jsonl")], fragments, root=tmp_path, capsys=capsys)
    assert "sk-do-not-print" not in line
