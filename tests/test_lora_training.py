"""LoRA training in its named steps (prepare, fit, calibrate, save): the edges of the recipe."""
from __future__ import annotations

import json


def test_no_validation_split_trains_every_epoch_and_saves(tiny_bert, sample_records, tmp_path):
    # --val-fraction 0 was accepted by judge.train and then ended in an IndexError from the tokenizer
    # (an empty validation batch): it must train on everything, keep the last epoch and skip calibration.
    from training.examples import labelled_data
    from training.lora import LoraRecipe, train_lora

    data = labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")
    recipe = LoraRecipe(base_model=tiny_bert, epochs=2, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=64, max_length=48, seed=0, val_fraction=0.0)
    trained = train_lora(data, tmp_path / "judge", recipe, progress=False, check_precision=False)
    assert trained.metrics["n_val"] == 0 and trained.metrics["n_train"] == len(sample_records)
    assert [e["epoch"] for e in trained.metrics["history"]] == [1, 2] and trained.metrics["best_epoch"] == 2
    assert "val_kappa" not in trained.metrics and trained.metrics["temperature"] == 1.0
    settings = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert settings["kind"] == "lora" and settings["temperature"] == 1.0


def test_judge_train_reads_its_input_in_the_encoding_it_is_given(sample_records, tmp_path, capsys):
    # --encoding was in judge.train's help and ignored: a latin-1 file was read as UTF-8 whatever it said.
    from judge import train
    from tests.badinput import run_module

    sheet = tmp_path / "labels.csv"
    rows = sample_records[["id", "prompt", "response", "label"]].head(120).copy()
    rows["response"] = rows["response"].astype(str) + " café"  # é is one byte in latin-1, invalid as UTF-8
    rows.to_csv(sheet, index=False, encoding="latin-1")
    argv = ["--train", str(sheet), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--no-progress"]
    code, _, err = run_module(train, [*argv, "--out", str(tmp_path / "utf8")], capsys)
    assert code == 2 and "--encoding" in err  # read as UTF-8: refused, naming the fix
    code, _, err = run_module(train, [*argv, "--encoding", "latin-1", "--out", str(tmp_path / "latin1")], capsys)
    assert code == 0, err[-2000:]
    assert (tmp_path / "latin1" / "judge.json").is_file()
