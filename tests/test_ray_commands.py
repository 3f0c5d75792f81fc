"""The commands themselves on a real local Ray (2 CPUs, the session's one: tests/conftest.py): `judge.label
--ray` and `python -m generation --ray` write the bytes a run without Ray writes, record the cluster in
the manifest, and finish a run that crashed without redoing what it wrote."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation import __main__ as generate_cmd
from judge import label as label_cmd
from judge.core.records import JsonlCheckpoint, checkpoint_path
from tests.badinput import assert_refused
from tests.conftest import needs_chehbouni, run_cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'safeguard-audit[cluster]')")

from tests.test_ray_executor import cpu_share  # noqa: E402


@pytest.fixture(scope="module")
def released_7b(chehbouni_records, tmp_path_factory):
    """The 2,304 released Llama 2 7B records, as a JSONL file judge.label reads."""
    records = chehbouni_records[chehbouni_records["model"] == "llama-2-7b-chat"].reset_index(drop=True)
    assert len(records) == 2304
    path = tmp_path_factory.mktemp("released") / "llama-2-7b-chat.jsonl"
    records.to_json(path, orient="records", lines=True)
    return path


def manifest_of(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


@needs_chehbouni
@pytest.mark.parametrize("kind", ["tfidf", "lora"])
def test_released_records_with_ray_are_the_bytes_of_one_process(ray_cluster, released_7b, tfidf_spec, trained_tiny, tmp_path, capsys, kind):
    spec = tfidf_spec if kind == "tfidf" else f"lora:{trained_tiny[0]}"
    base = ["--judge", spec, "--input", str(released_7b), "--batch-size", "64", "--prefix", "judge_", "--no-progress"]
    alone = tmp_path / "alone.jsonl"
    code, _, err = run_cli(label_cmd, [*base, "--out", str(alone)], capsys)
    assert code == 0, err
    assert manifest_of(alone)["executor"] == {"executor": "in-process"}
    for actors in (1, 2):
        out = tmp_path / f"ray{actors}.jsonl"
        code, _, err = run_cli(label_cmd, [*base, "--ray", "--ray-actors", str(actors), "--out", str(out)], capsys)
        assert code == 0, err
        assert out.read_bytes() == alone.read_bytes(), f"{actors} actor(s)"
        # The cluster and the timings: 2,304 rows in batches of 64 are 36 batches, all computed by the actors.
        executor = manifest_of(out)["executor"]
        assert {k: executor[k] for k in ("executor", "address", "actors", "nodes", "nodes_used", "cpus", "gpus", "gpus_per_actor")} == {
            "executor": "ray", "address": "local", "actors": actors, "nodes": 1, "nodes_used": 1, "cpus": 2.0, "gpus": 0.0, "gpus_per_actor": 0.0}
        # judge.label runs its models on --threads (default 1) whatever the test process's torch says (issue 36, 4)
        assert executor["cpus_per_actor"] == cpu_share(actors, threads=1) and executor["threads_per_actor"] == 1
        assert executor["batches"] == 36 == executor["compute_seconds"]["n"] == executor["round_trip_seconds"]["n"]
        assert executor["retries"] == 0 and executor["failed_batches"] == [] and executor["worker_build_seconds"]["n"] == actors
        assert executor["seconds"] > 0 and executor["startup_seconds"] > 0 and executor["batches_per_second"] > 0


def test_resume_after_a_crash_finishes_the_rest_through_ray(ray_cluster, sample_records, tfidf_spec, tmp_path, capsys, monkeypatch):
    records = tmp_path / "records.jsonl"
    sample_records.to_json(records, orient="records", lines=True)
    base = ["--judge", tfidf_spec, "--input", str(records), "--batch-size", "32", "--prefix", "judge_", "--no-progress"]
    alone, out = tmp_path / "alone.jsonl", tmp_path / "out.jsonl"
    assert run_cli(label_cmd, [*base, "--out", str(alone)], capsys)[0] == 0

    from judge.kinds.base import Judge

    compute, calls = Judge.compute, []

    def crash_on_the_fourth(self, batch):
        calls.append(batch.number)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the fourth batch: three are written whole
        return compute(self, batch)

    monkeypatch.setattr(Judge, "compute", crash_on_the_fourth)
    code, _, err = run_cli(label_cmd, [*base, "--out", str(out)], capsys)
    assert code == 130 and "rerun the same command to resume" in err
    monkeypatch.setattr(Judge, "compute", compute)
    partial = checkpoint_path(out)
    assert len(JsonlCheckpoint(partial).rows()) == 3 * 32 and not out.exists()  # three sealed batches
    with partial.open("a") as f:
        f.write('{"id": "cut mid-li')  # and the kill came mid-line, as a kill -9 would leave it

    code, stdout, err = run_cli(label_cmd, [*base, "--ray", "--ray-actors", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert out.read_bytes() == alone.read_bytes()
    assert "labelled 204 responses (96 resumed)" in stdout  # 300 rows less the 3 x 32 written before the crash
    manifest = manifest_of(out)
    assert manifest["throughput"]["labelled_this_run"] == 204 and manifest["executor"]["batches"] == 10 - 3
    assert not partial.exists()


def test_generation_with_ray_writes_the_rows_of_one_process(ray_cluster, tiny_llama, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "Name a colour number {i}."}}\n' for i in range(3)))
    base = ["--prompts", str(prompts), "--model", tiny_llama, "--samples", "2", "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    assert run_cli(generate_cmd, [*base, "--out", str(tmp_path / "alone.jsonl")], capsys)[0] == 0
    code, _, err = run_cli(generate_cmd, [*base, "--ray", "--ray-actors", "2", "--out", str(tmp_path / "ray.jsonl")], capsys)
    assert code == 0, err
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()


@pytest.mark.parametrize("module, argv, fragments", [
    (label_cmd, ["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--ray-actors", "2"], ["--ray-actors", "--ray"]),
    (label_cmd, ["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--ray", "--ray-actors", "0"], ["actors"]),
    (generate_cmd, ["--prompts", "x.jsonl", "--out", "o.jsonl", "--ray", "not an address"], ["Ray address", "HOST:PORT"]),
    (generate_cmd, ["--prompts", "x.jsonl", "--out", "o.jsonl", "--ray-gpus", "1"], ["--ray-gpus applies with --ray only", "drop --ray-gpus"]),
    (label_cmd, ["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--ray-actors", "2", "--ray-gpus", "1"],
     ["--ray-actors and --ray-gpus apply with --ray only"]),
    (generate_cmd, ["--prompts", "x.jsonl", "--out", "o.jsonl", "--ray", "--ray-gpus", "-1"], ["GPUs per actor must be a number at least 0", "not -1"]),
], ids=["actors-without-ray", "zero-actors", "bad-address", "gpus-without-ray", "both-without-ray", "negative-gpus"])
def test_ray_settings_refused(module, argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)


def test_gpus_the_cluster_lacks_are_refused_before_a_row_is_written(ray_cluster, sample_records, tfidf_spec, tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    sample_records.head(40).to_json(records, orient="records", lines=True)
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(label_cmd, ["--judge", tfidf_spec, "--input", str(records), "--prefix", "judge_", "--no-progress", "--ray", "--ray-gpus", "1",
                                       "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 300, err
    assert "1 actors x 1 GPUs each need more than the cluster's 0 GPUs" in err and "Traceback" not in err
    assert not out.exists() and not checkpoint_path(out).exists()
