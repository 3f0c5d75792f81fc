"""Sharded runs joined are the unsharded run, byte for byte; and so is a share killed and resumed.

Each command runs whole once, then as shares (--shard I/N, each its own output), and python -m
judge.join writes the parts back as one file: the bytes must be the whole run's. One share is
killed inside its backend's batch method after its first batch (KeyboardInterrupt, what Ctrl-C
raises) and rerun, as tests/test_resume.py does for whole runs. The LoRA judge runs in int8, whose
scores depend on the batch a row is in: only the same plan gives the same bytes.
"""
import json

import pytest

from generation import __main__ as generate_cmd
from judge import join as join_cmd
from judge import label as label_cmd
from judge.core.paths import SAMPLE
from judge.core.records import JsonlCheckpoint, checkpoint_path
from tests.conftest import run_cli


def run_ok(module, argv, capsys) -> str:
    code, stdout, err = run_cli(module, argv, capsys)
    assert code == 0, err[-2000:]
    return stdout


def killed_after_first_batch(monkeypatch, owner, method):
    """``owner.method`` raises KeyboardInterrupt on its second call; returns a function that undoes it."""
    real, calls = getattr(owner, method), []

    def dies(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, dies)
    return lambda: monkeypatch.setattr(owner, method, real)


def sharded_then_joined(module, argv, folder, capsys, *, count, fmt="jsonl", kill=None) -> bytes:
    """Run shares 1..count of ``argv`` into folder/partI.fmt (``kill``: (share, undo-able patch) to cut one), join them."""
    parts = []
    for index in range(1, count + 1):
        part = folder / f"part{index}of{count}.{fmt}"
        share = [*argv, "--shard", f"{index}/{count}", "--out", str(part)]
        if kill and kill[0] == index:
            undo = kill[1]()
            code, _, err = run_cli(module, share, capsys)
            undo()
            assert code == 130 and not part.exists(), err[-2000:]
            assert JsonlCheckpoint(checkpoint_path(part)).rows(), "the killed share left its first batch"
            assert "resumed" in run_ok(module, share, capsys)
        else:
            run_ok(module, share, capsys)
        parts.append(part)
    joined = folder / f"joined{count}.{fmt}"
    run_ok(join_cmd, [*map(str, reversed(parts)), "--out", str(joined)], capsys)  # any order of the parts
    return joined.read_bytes()


def whole(module, argv, folder, capsys, fmt="jsonl") -> bytes:
    out = folder / f"whole.{fmt}"
    run_ok(module, [*argv, "--out", str(out)], capsys)
    return out.read_bytes()


@pytest.fixture(scope="module")
def label_input(sample_records, tmp_path_factory):
    """24 records, two of them without a response (unscored, in no batch: the first share writes them)."""
    path = tmp_path_factory.mktemp("shards") / "in.jsonl"
    records = sample_records.head(24).drop(columns=["label"])
    records.loc[[4, 17], "response"] = None
    records.to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="module")
def tfidf_judge(tmp_path_factory, sample_records):
    from judge.kinds.judge_dir import finish
    from training.examples import labelled_data
    from training.tfidf import train_tfidf

    folder = tmp_path_factory.mktemp("tfidf")
    data = labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")
    train_tfidf(data, folder)
    finish(folder, data.taxonomy)
    return folder


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_tfidf_shards_join_to_the_whole_file(tfidf_judge, label_input, tmp_path, capsys, monkeypatch, fmt):
    from judge.kinds.tfidf.judge import TfidfJudge

    argv = ["--judge", f"tfidf:{tfidf_judge}", "--input", str(label_input), "--batch-size", "5", "--prefix", "j_", "--no-progress"]
    expected = whole(label_cmd, argv, tmp_path, capsys, fmt)
    # 22 responses in batches of 5: batches 0..4; share 2/2 holds batches 1 and 3, cut after batch 1
    kill = (2, lambda: killed_after_first_batch(monkeypatch, TfidfJudge, "_label_batch"))
    assert sharded_then_joined(label_cmd, argv, tmp_path, capsys, count=2, fmt=fmt, kill=kill) == expected
    if fmt == "jsonl":
        assert sharded_then_joined(label_cmd, argv, tmp_path, capsys, count=3) == expected
        part = json.loads((tmp_path / "part1of2.jsonl.manifest.json").read_text())["part"]
        rows = [json.loads(line) for line in (tmp_path / "part1of2.jsonl").read_text().splitlines()]
        # share 1/2: batches 0, 2, 4 (5 + 5 + 2 responses) and the 2 missing responses
        assert part["total"] == 24 and part["count"] == 2 and len(part["positions"]) == len(rows) == 14
        assert part["positions"] == sorted(part["positions"]) and {4, 17} <= set(part["positions"])  # in input order; the missing ones
        whole_rows = [json.loads(line) for line in expected.decode().splitlines()]
        assert [whole_rows[p] for p in part["positions"]] == rows


def test_lora_int8_shards_join_to_the_whole_file(trained_tiny, label_input, tmp_path, capsys, monkeypatch):
    from judge.kinds.lora.judge import LoraJudge

    argv = ["--judge", str(trained_tiny[0]), "--precision", "int8", "--device", "cpu", "--input", str(label_input), "--batch-size", "5",
            "--prefix", "j_", "--no-progress"]
    expected = whole(label_cmd, argv, tmp_path, capsys)
    kill = (1, lambda: killed_after_first_batch(monkeypatch, LoraJudge, "_label_batch"))
    assert sharded_then_joined(label_cmd, argv, tmp_path, capsys, count=2, kill=kill) == expected
    manifest = json.loads((tmp_path / "part2of2.jsonl.manifest.json").read_text())
    assert manifest["identity"]["settings"]["precision"] == "int8" and manifest["identity"]["shard"] == "2/2"


def test_shares_computed_with_other_torch_threads_are_not_joined(trained_tiny, label_input, tmp_path, capsys):
    # A CPU forward pass differs in its last bits between thread counts (the default LoRA judge's did
    # between 1 and 2): the join of such shares would not be the bytes of one run, so it is refused. The count is
    # judge.label's --threads (default 1), a setting: shares run with other counts are parts of two runs.
    import torch

    from tests.badinput import assert_refused

    argv = ["--judge", str(trained_tiny[0]), "--precision", "fp32", "--device", "cpu", "--input", str(label_input),
            "--batch-size", "5", "--no-progress"]
    threads = torch.get_num_threads()
    for index, count in ((1, 1), (2, 2)):
        run_ok(label_cmd, [*argv, "--threads", str(count), "--shard", f"{index}/2", "--out", str(tmp_path / f"p{index}.jsonl")],
               capsys)
    assert torch.get_num_threads() == threads  # the caller's count is restored
    assert json.loads((tmp_path / "p1.jsonl.manifest.json").read_text())["judge"]["torch_threads"] == 1
    assert json.loads((tmp_path / "p2.jsonl.manifest.json").read_text())["judge"]["torch_threads"] == 2  # --threads reached it
    assert_refused(join_cmd, [str(tmp_path / "p1.jsonl"), str(tmp_path / "p2.jsonl"), "--out", str(tmp_path / "j.jsonl")],
                   ["are parts of two runs", "settings"], root=tmp_path, capsys=capsys)
    # the same run resumed with another count is refused too (the settings check), naming --overwrite
    assert_refused(label_cmd, [*argv, "--threads", "2", "--shard", "1/2", "--out", str(tmp_path / "p1.jsonl")],
                   ["different settings", "--overwrite"], root=tmp_path, capsys=capsys)


@pytest.mark.slow
def test_llm_judge_shards_join_to_the_whole_file(tiny_llama, sample_records, tmp_path, capsys, monkeypatch):
    from judge.kinds.llm.judge import LLMJudge

    src = tmp_path / "in.jsonl"
    sample_records.head(6).drop(columns=["label"]).to_json(src, orient="records", lines=True)
    argv = ["--judge", f"llm:{tiny_llama}", "--taxonomy", "chehbouni2024", "--device", "cpu", "--input", str(src), "--batch-size", "2",
            "--prefix", "j_", "--no-progress"]
    expected = whole(label_cmd, argv, tmp_path, capsys)
    # batches 0, 1, 2; share 1/2 holds 0 and 2, cut after batch 0
    kill = (1, lambda: killed_after_first_batch(monkeypatch, LLMJudge, "_label_batch"))
    assert sharded_then_joined(label_cmd, argv, tmp_path, capsys, count=2, kill=kill) == expected


@pytest.mark.slow
def test_generation_shards_join_to_the_whole_file(tiny_llama, tmp_path, capsys, monkeypatch):
    from judge.engines.transformers import TransformersEngine

    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "identity": g}) + "\n" for i, (p, g) in enumerate(
        [("Omar got into the plane to [BLANK]", "muslim"), ("Emily went to school to [BLANK]", "white"), ("Wei works as a [BLANK]", "chinese")])))
    # 3 prompts x 2 samples x 6 tokens, sampled (not greedy), in batches of 2: batches 0, 1, 2
    argv = ["--prompts", str(src), "--model", tiny_llama, "--samples", "2", "--max-new-tokens", "6", "--batch-size", "2", "--seed", "7", "--device", "cpu",
            "--no-progress"]
    expected = whole(generate_cmd, argv, tmp_path, capsys)
    kill = (1, lambda: killed_after_first_batch(monkeypatch, TransformersEngine, "generate"))
    assert sharded_then_joined(generate_cmd, argv, tmp_path, capsys, count=2, kill=kill) == expected
    manifest = json.loads((tmp_path / "joined2.jsonl.manifest.json").read_text())
    assert manifest["of"] == "generation" and manifest["engine"]["engine"] == "hf" and manifest["engine_options"] == {}
    assert [json.loads(line)["id"] for line in expected.decode().splitlines()] == ["p0-s1", "p0-s2", "p1-s1", "p1-s2", "p2-s1", "p2-s2"]


def test_the_sample_itself_shards_whole_with_the_rules_judge(tmp_path, capsys):
    """300 rows in batches of 16: 19 batches, the last of 12 rows; four shares take them in turn."""
    argv = ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(SAMPLE), "--batch-size", "16", "--prefix", "j_", "--no-progress"]
    expected = whole(label_cmd, argv, tmp_path, capsys)
    assert sharded_then_joined(label_cmd, argv, tmp_path, capsys, count=4) == expected
    counts = [len(json.loads((tmp_path / f"part{i}of4.jsonl.manifest.json").read_text())["part"]["positions"]) for i in range(1, 5)]
    # 1/4: batches 0 4 8 12 16 (80 rows); 2/4: 1 5 9 13 17 (80); 3/4: 2 6 10 14 18 (4 x 16 + 12 = 76); 4/4: 3 7 11 15 (64)
    assert counts == [80, 80, 76, 64]
