"""The commands themselves on a real local Ray (2 CPUs, started here, shut down after): `judge.label
--ray` and `python -m generation --ray` write the bytes a run without Ray writes."""
from __future__ import annotations

import pytest

from generation import __main__ as generate_cmd
from judge import label as label_cmd
from tests.conftest import run_cli
from tests.badinput import assert_refused

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'safeguard-audit[cluster]')")

from tests.test_ray_executor import ray_cluster  # noqa: E402,F401 - the same local Ray fixture


def test_label_with_ray_writes_the_bytes_of_one_process(ray_cluster, chehbouni_records, tmp_path, capsys):
    records = chehbouni_records[chehbouni_records["model"] == "llama-2-7b-chat"].head(600)
    train = tmp_path / "train.jsonl"
    records.head(300).to_json(train, orient="records", lines=True)
    rest = tmp_path / "rest.jsonl"
    records.to_json(rest, orient="records", lines=True)
    from judge import train as train_cmd

    code, _, err = run_cli(train_cmd, ["--train", str(train), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "j")], capsys)
    assert code == 0, err
    base = ["--judge", str(tmp_path / "j"), "--input", str(rest), "--batch-size", "32", "--prefix", "judge_", "--no-progress"]
    assert run_cli(label_cmd, [*base, "--out", str(tmp_path / "alone.jsonl")], capsys)[0] == 0
    for actors in ("1", "2"):
        out = tmp_path / f"ray{actors}.jsonl"
        code, _, err = run_cli(label_cmd, [*base, "--ray", "--ray-actors", actors, "--out", str(out)], capsys)
        assert code == 0, err
        assert out.read_bytes() == (tmp_path / "alone.jsonl").read_bytes(), f"{actors} actor(s)"
        import json

        executor = json.loads(out.with_name(out.name + ".manifest.json").read_text())["executor"]
        assert executor["executor"] == "ray" and executor["actors"] == int(actors)


def test_generation_with_ray_writes_the_rows_of_one_process(ray_cluster, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "Name a colour number {i}."}}\n' for i in range(3)))
    base = ["--prompts", str(prompts), "--samples", "2", "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    assert run_cli(generate_cmd, [*base, "--out", str(tmp_path / "alone.jsonl")], capsys)[0] == 0
    code, _, err = run_cli(generate_cmd, [*base, "--ray", "--ray-actors", "2", "--out", str(tmp_path / "ray.jsonl")], capsys)
    assert code == 0, err
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()


@pytest.mark.parametrize("module, argv, fragments", [
    (label_cmd, ["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--ray-actors", "2"], ["--ray-actors", "--ray"]),
    (label_cmd, ["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--ray", "--ray-actors", "0"], ["actors"]),
    (generate_cmd, ["--prompts", "x.jsonl", "--out", "o.jsonl", "--ray", "not an address"], ["Ray address", "HOST:PORT"]),
], ids=["actors-without-ray", "zero-actors", "bad-address"])
def test_ray_settings_refused(module, argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
