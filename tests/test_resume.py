"""A killed run, resumed, writes exactly the bytes an uninterrupted run writes.

A kill leaves the checkpoint (OUT.partial.jsonl) in one of three states: whole batches only (killed
between batches), whole batches plus some rows of the next one (killed mid-batch), or that plus a
cut line (killed mid-write). Each state is made here for real: the run is stopped after its k-th
checkpoint append (KeyboardInterrupt, what the process sees on Ctrl-C), then the extra rows or the
cut line are appended as a dying process would have left them. The rows of the half-written batch
are deliberately wrong: if resume trusted them, the output would differ.
"""
import json

import pytest

from generation import __main__ as generate_cmd
from generation import prompts as prompts_cmd
from judge import label as label_cmd
from judge.core.paths import DATA
from judge.core.records import JsonlCheckpoint, checkpoint_path
from tests.conftest import run_cli

KILLS = ["between_batches", "mid_batch", "mid_line"]


def resumed_bytes(module, argv, out, tmp_path, capsys, monkeypatch, *, kill, after_appends, corrupt):
    real_append = JsonlCheckpoint.append
    count = {"n": 0}

    def append_then_die(self, rows):
        real_append(self, rows)
        count["n"] += 1
        if count["n"] == after_appends:
            raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", append_then_die)
    code, _, err = run_cli(module, [*argv, "--out", str(out)], capsys)
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)
    assert code == 130, err
    assert not out.exists()
    partial = checkpoint_path(out)
    done = JsonlCheckpoint(partial).rows()
    assert done, "the interrupted run left finished batches"
    if kill in ("mid_batch", "mid_line"):
        with open(partial, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(corrupt(done)) + "\n")
    if kill == "mid_line":
        with open(partial, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(corrupt(done))[:25])  # the write the kill cut short
    code, stdout, err = run_cli(module, [*argv, "--out", str(out)], capsys)
    assert code == 0, err
    assert "resumed" in stdout
    assert not partial.exists()
    return out.read_bytes()


def corrupt_label_row(clean: bytes):
    """The next batch's first row as a dying process wrote it: same shape as the finished rows, wrong values."""
    def corrupt(done):
        clean_rows = [json.loads(line) for line in clean.decode().splitlines()]
        finished = {r["id"] for r in done}
        victim = next(r for r in clean_rows if r["id"] not in finished)
        row = {k: victim.get(k) for k in done[0]}
        row["j_label"] = "failure" if row["j_label"] != "failure" else "answer"
        row["j_confidence"] = 0.123
        return row
    return corrupt


@pytest.fixture(scope="module")
def label_input(sample_records, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "in.jsonl"
    sample_records.head(24).drop(columns=["label"]).to_json(path, orient="records", lines=True)
    return path


def clean_bytes(module, argv, tmp_path, capsys) -> bytes:
    """The output of an uninterrupted run of the same command."""
    code, _, err = run_cli(module, [*argv, "--out", str(tmp_path / "clean.jsonl")], capsys)
    assert code == 0, err
    return (tmp_path / "clean.jsonl").read_bytes()


@pytest.mark.parametrize("kill", KILLS)
@pytest.mark.parametrize("judge", ["lora-fp32", "lora-int8", "llm"])
def test_label_resume_is_byte_identical(request, label_input, tmp_path, capsys, monkeypatch, kill, judge):
    if judge == "llm":
        spec = ["--judge", f"llm:{request.getfixturevalue('tiny_llama')}", "--taxonomy", "chehbouni2024"]
    else:
        spec = ["--judge", str(request.getfixturevalue("trained_tiny")[0]), "--precision", "int8" if judge == "lora-int8" else "fp32"]
    argv = [*spec, "--input", str(label_input), "--batch-size", "5", "--device", "cpu", "--no-progress", "--prefix", "j_"]
    clean = clean_bytes(label_cmd, argv, tmp_path, capsys)
    got = resumed_bytes(label_cmd, argv, tmp_path / "out.jsonl", tmp_path, capsys, monkeypatch, kill=kill, after_appends=2,
                        corrupt=corrupt_label_row(clean))
    assert got == clean


def test_changing_batch_size_on_resume_is_refused(trained_tiny, label_input, tmp_path, capsys, monkeypatch):
    argv = ["--judge", str(trained_tiny[0]), "--input", str(label_input), "--device", "cpu", "--no-progress", "--prefix", "j_"]
    out = tmp_path / "out.jsonl"
    real_append = JsonlCheckpoint.append

    def die(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", die)
    assert run_cli(label_cmd, [*argv, "--batch-size", "5", "--out", str(out)], capsys)[0] == 130
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)
    code, _, err = run_cli(label_cmd, [*argv, "--batch-size", "7", "--out", str(out)], capsys)
    assert code == 2 and "batch_size" in err and "--overwrite" in err


@pytest.mark.parametrize("kill", KILLS)
def test_generation_resume_is_byte_identical(tiny_llama, tmp_path, capsys, monkeypatch, kill):
    prompts = prompts_cmd.build_prompts(prompts_cmd.load_templates(DATA / "templates" / "templates.json"),
                                        prompts_cmd.load_names(DATA / "names" / "names.json"), sample=5, seed=0)
    src = tmp_path / "p.jsonl"
    prompts.to_json(src, orient="records", lines=True)
    # 5 prompts x 2 samples = 10 outputs in batches of 4 (4, 4, 2); sampled, not greedy.
    argv = ["--model", tiny_llama, "--prompts", str(src), "--samples", "2", "--batch-size", "4", "--max-new-tokens", "8", "--seed", "5",
            "--device", "cpu", "--no-progress"]
    clean = clean_bytes(generate_cmd, argv, tmp_path, capsys)

    def corrupt(done):
        clean_rows = [json.loads(line) for line in clean.decode().splitlines()]
        finished = {(r["prompt_id"], r["sample"]) for r in done}
        victim = dict(next(r for r in clean_rows if (r["prompt_id"], r["sample"]) not in finished))
        victim["response"] = "a response the resumed run must not keep"
        return victim

    got = resumed_bytes(generate_cmd, argv, tmp_path / "out.jsonl", tmp_path, capsys, monkeypatch, kill=kill, after_appends=1, corrupt=corrupt)
    assert got == clean


# -- the resumable run both commands share (judge.run.resumable) ---------------------------------------

def test_one_rule_for_what_a_rerun_must_match_and_for_the_rows_asked_again(tmp_path, capsys):
    from judge.run.resumable import ResumableRun, run_identity
    from judge.run.runner import RunResult

    out = tmp_path / "out.jsonl"
    settings = {"batch_size": 2, "out": str(out), "overwrite": False, "progress": True, "verbose": False, "shard": None,
                "ray": None, "ray_actors": None, "ray_gpus": None}
    identity = run_identity(settings, input={"in.jsonl": "0" * 64})
    assert identity == {"settings": {"batch_size": 2}, "input": {"in.jsonl": "0" * 64}}  # where and how it runs is never matched

    def run_once(failed_now: set[str]):
        run = ResumableRun("generation", out, identity)
        previous = run.prepare(overwrite=False, count="outputs", unit="outputs")
        if previous:
            return previous, None
        run.start(settings, inputs=[])
        # the retried rows fail again when failed_now says so: a row's latest copy in the checkpoint decides
        retried = run.retry_failed(lambda row: row["failed"],
                                   lambda keys: RunResult({k: {"id": k, "failed": k in failed_now} for k in keys}, sorted(keys)))
        rows = {k: {"id": k, "failed": k in failed_now} for k in "abc"}
        if retried is None:
            run.checkpoint.append(rows.values())
        result = RunResult(dict(rows), [] if retried is not None else list(rows), executor={"executor": "in-process"})
        n_failed = len(failed_now)
        run.finish(result, positions=[0, 1, 2], total=3, write=lambda: out.write_text("rows\n"), failed=n_failed, throughput={},
                   counts={"outputs": 3, "failed": n_failed})
        return run.manifest.data, retried

    manifest, _ = run_once({"a", "b"})
    assert manifest["status"] == "complete" and manifest["counts"]["failed"] == 2 and checkpoint_path(out).exists()
    _, retried = run_once({"b"})  # both asked again; b fails again
    assert sorted(retried.computed_keys) == ["a", "b"] and checkpoint_path(out).exists()
    _, retried = run_once(set())  # only b: a's earlier failed copy was replaced by its retry
    assert retried.computed_keys == ["b"] and not checkpoint_path(out).exists()
    previous, retried = run_once(set())
    assert retried is None and previous["counts"]["failed"] == 0
    assert "already complete with these settings (3 outputs); nothing to do" in capsys.readouterr().out


def _rules_argv(label_input, out):
    return ["--judge", "rules", "--input", str(label_input), "--batch-size", "5", "--no-progress", "--prefix", "j_",
            "--out", str(out)]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_file_at_the_checkpoint_path_is_in_the_way(label_input, tmp_path, capsys, overwrite):
    """Issue 31 (1c): a finished file that happens to be named OUT.partial.jsonl, with no manifest claiming it,
    is neither deleted nor resumed from: the run stops in one line saying it is in the way."""
    from tests.badinput import assert_refused

    out = tmp_path / "u.jsonl"
    users = checkpoint_path(out)
    users.write_text('{"id": "mine", "note": "a finished file of my own"}\n')
    argv = _rules_argv(label_input, out) + (["--overwrite"] if overwrite else [])
    line = assert_refused(label_cmd, argv, [str(users), "in the way", "move", "another --out"], root=tmp_path, capsys=capsys)
    assert "judge.label" in line
    assert users.read_text() == '{"id": "mine", "note": "a finished file of my own"}\n'


def test_a_checkpoint_the_manifest_does_not_say_is_running_is_in_the_way(label_input, tmp_path, capsys):
    """A complete run's manifest (no failed rows) does not claim a file later put at the checkpoint's path."""
    from tests.badinput import assert_refused

    out = tmp_path / "u.jsonl"
    assert run_cli(label_cmd, _rules_argv(label_input, out), capsys)[0] == 0
    out.unlink()  # the output gone, its complete manifest still beside it
    users = checkpoint_path(out)
    users.write_text("my own rows\n")
    assert_refused(label_cmd, _rules_argv(label_input, out), ["in the way"], root=tmp_path, capsys=capsys)
    assert users.read_text() == "my own rows\n"


def test_a_running_checkpoint_is_still_resumed_and_removed(label_input, tmp_path, capsys, monkeypatch):
    """The rule keeps resume: the manifest says ``running`` for judge.label, so its checkpoint is reused."""
    out = tmp_path / "u.jsonl"
    clean = clean_bytes(label_cmd, _rules_argv(label_input, tmp_path / "clean.jsonl")[:-2], tmp_path, capsys)
    real_append = JsonlCheckpoint.append

    def die(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", die)
    assert run_cli(label_cmd, _rules_argv(label_input, out), capsys)[0] == 130
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)
    assert checkpoint_path(out).exists()
    assert json.loads(out.with_name(out.name + ".manifest.json").read_text())["status"] == "running"
    code, stdout, err = run_cli(label_cmd, _rules_argv(label_input, out), capsys)
    assert code == 0, err
    assert not checkpoint_path(out).exists() and out.read_bytes() == clean
