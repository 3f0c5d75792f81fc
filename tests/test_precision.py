"""Inference precision (issue 22): fp32, bf16 and int8, chosen by the judge's own faithfulness check.

A tiny random BERT judge (conftest ``trained_tiny``), and one built to drift: its base has weights
50 times the usual scale, so its logits are near ties that bf16 and int8 rounding flip. Which CPU
the test runs on is set by replacing ``judge.kinds.lora.precision.cpu_info`` (the flags only), so auto's choice
is tested for a CPU with AMX and for one without bf16 on any machine.
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from judge import agree as agree_cmd
from judge import label as label_cmd
from judge.core.records import JsonlCheckpoint
from judge.kinds.judge_dir import _self_digest, directory_key, finish
from judge.kinds.lora import precision as prec
from judge.kinds.lora.judge import LoraJudge
from tests.badinput import assert_refused
from tests.conftest import run_cli

AMX_CPU = {"model": "Intel(R) Xeon(R) test CPU with AMX", "flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"]}
PLAIN_CPU = {"model": "AMD EPYC test CPU", "flags": ["avx2"]}
CPU = torch.device("cpu")


def on_cpu(monkeypatch, cpu: dict) -> None:
    monkeypatch.setattr(prec, "cpu_info", lambda: cpu)


def with_record(source, target, record):
    """A copy of a judge directory whose judge.json carries ``record`` (None: no record, as before issue 22)."""
    shutil.copytree(source, target)
    meta = json.loads((target / "judge.json").read_text())
    meta.pop(prec.RECORD, None)
    if record is not None:
        meta[prec.RECORD] = record
    meta["judge_json_sha256"] = _self_digest(meta)
    (target / "judge.json").write_text(json.dumps(meta))
    return target


def entry(passed: bool) -> dict:
    return {"labels_equal": 1.0 if passed else 0.9, "max_abs_prob_diff": 0.01, "mean_abs_prob_diff": 0.001, "passed": passed}


BOTH_PASS = {"reference": "fp32", "checked_on": 45, "split": "validation", "device": "cpu", "bf16": entry(True), "int8": entry(True)}


@pytest.fixture(scope="module")
def drift_judge(sample_records, tmp_path_factory):
    """A LoRA judge on a BERT whose weights are 50x the usual scale (initializer_range 1.0): near-tie logits."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from judge.engines.models import minilm_path
    from training.examples import labelled_data
    from training.lora import LoraRecipe, train_lora

    base = tmp_path_factory.mktemp("drift-base")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=256, initializer_range=1.0)
    BertModel(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(base)
    out = tmp_path_factory.mktemp("drift-judge")
    data = labelled_data(sample_records.head(120), label_column="label", taxonomy="chehbouni2024")
    recipe = LoraRecipe(base_model=str(base), epochs=1, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=32, max_length=64, seed=0, val_fraction=0.3)
    trained = train_lora(data, out, recipe, progress=False)
    finish(out, data.taxonomy, training_ids=data.records["id"])
    return out, trained


@pytest.fixture(scope="module")
def label_input(sample_records, tmp_path_factory):
    path = tmp_path_factory.mktemp("precision-input") / "in.jsonl"
    sample_records.head(24).to_json(path, orient="records", lines=True)
    return path


def label_argv(judge_dir, label_input, out, *extra):
    return ["--judge", str(judge_dir), "--input", str(label_input), "--device", "cpu", "--no-progress", "--prefix", "j_",
            "--batch-size", "5", "--out", str(out), *extra]


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("j_p_")]].to_numpy(dtype=float)


# -- the check itself --------------------------------------------------------------------------

def test_faithfulness_against_hand_derived_values():
    # 200 texts, 2 categories. Reference p = (0.6, 0.4) for all; the candidate moves every text by
    # 0.01 (0.59, 0.41) and flips k of them to (0.4, 0.6).
    # k = 1: labels equal 199/200 = 0.995 (the threshold: passes); |dp| is 0.2 on the flipped text and
    #        0.01 elsewhere, so mean |dp| = (2 * 0.2 + 2 * 199 * 0.01) / 400 = (0.4 + 3.98) / 400 = 0.01095 > 0.005: fails on it.
    # k = 1 with no 0.01 shift: mean |dp| = 0.4 / 400 = 0.001, passes; k = 2: 198/200 = 0.99 < 0.995, fails.
    reference = np.tile([0.6, 0.4], (200, 1))

    def candidate(k, shift):
        out = np.tile([0.6 - shift, 0.4 + shift], (200, 1))
        out[:k] = [0.4, 0.6]
        return out

    shifted = prec.faithfulness(reference, candidate(1, 0.01))
    assert shifted["labels_equal"] == pytest.approx(0.995) and shifted["mean_abs_prob_diff"] == pytest.approx(0.01095)
    assert shifted["max_abs_prob_diff"] == pytest.approx(0.2) and shifted["passed"] is False
    one = prec.faithfulness(reference, candidate(1, 0.0))
    assert one["labels_equal"] == pytest.approx(0.995) and one["mean_abs_prob_diff"] == pytest.approx(0.001) and one["passed"] is True
    two = prec.faithfulness(reference, candidate(2, 0.0))
    assert two["labels_equal"] == pytest.approx(0.99) and two["passed"] is False
    assert prec.faithfulness(np.zeros((0, 2)), np.zeros((0, 2)))["passed"] is False  # nothing checked is not a pass


def test_training_records_the_check_without_texts(trained_tiny, sample_records):
    out, trained, _ = trained_tiny
    meta = json.loads((out / "judge.json").read_text())
    record = meta[prec.RECORD]
    assert set(record) == {"reference", "checked_on", "split", "device", "tolerance", "bf16", "int8"}
    # 45 validation texts (15% of 300) topped up with 155 training texts to 200
    assert trained.metrics["n_val"] == 45 and record["checked_on"] == 200 and record["split"] == "validation+training"
    assert record["tolerance"] == {"labels_equal": 0.995, "mean_abs_prob_diff": 0.005}
    for p in ("bf16", "int8"):
        assert set(record[p]) == {"labels_equal", "max_abs_prob_diff", "mean_abs_prob_diff", "passed"}
        assert record[p]["passed"] == (record[p]["labels_equal"] >= 0.995 and record[p]["mean_abs_prob_diff"] <= 0.01)
    text = (out / "judge.json").read_text()
    assert not any(len(r) > 20 and r in text for r in sample_records["response"].dropna())  # only shares and differences
    assert prec.read_record(meta, out) == record


def test_a_small_validation_split_is_topped_up_with_training_texts():
    from training.lora import MIN_TEXTS_CHECKED, texts_to_check

    def enc(n, tag):
        return {"input_ids": [[tag, i] for i in range(n)], "attention_mask": [[1, 1]] * n}

    small, split = texts_to_check(enc(45, 1), enc(255, 2), seed=0)
    assert MIN_TEXTS_CHECKED == 200 and split == "validation+training" and len(small["input_ids"]) == 200
    assert small["input_ids"][:45] == enc(45, 1)["input_ids"] and len({tuple(x) for x in small["input_ids"][45:]}) == 155  # distinct
    assert texts_to_check(enc(346, 1), enc(1958, 2), seed=0) == (enc(346, 1), "validation")
    assert texts_to_check(enc(0, 1), enc(50, 2), seed=0)[1] == "training"


def test_a_drifting_judge_is_caught_and_falls_back_to_fp32(drift_judge, sample_records, monkeypatch, capsys):
    out, trained = drift_judge
    record = json.loads((out / "judge.json").read_text())[prec.RECORD]
    assert record["checked_on"] == 120  # 36 validation texts (30% of 120) and all 84 training texts
    for p in ("bf16", "int8"):
        assert record[p]["labels_equal"] < 0.995 and record[p]["passed"] is False, record
    on_cpu(monkeypatch, AMX_CPU)  # a CPU where auto would take bf16 if it had passed
    capsys.readouterr()
    judge = LoraJudge(out, device="cpu")
    assert judge.precision == "fp32"
    assert "precision: fp32" in capsys.readouterr().err and "bf16, int8 failed the check" in judge.choice.reason
    # The drift is real: forced into bf16, the judge changes labels fp32 gives.
    subset = sample_records.head(120).tail(60)
    forced = LoraJudge(out, device="cpu", precision="bf16").label(subset, progress=False)
    assert (forced["label"] != judge.label(subset, progress=False)["label"]).any()


def test_a_judge_without_the_record_loads_in_fp32(trained_tiny, tmp_path, monkeypatch, capsys):
    on_cpu(monkeypatch, AMX_CPU)
    old = with_record(trained_tiny[0], tmp_path / "old", None)
    judge = LoraJudge(old, device="cpu")
    assert judge.precision == "fp32" and "records no faithfulness check" in capsys.readouterr().err
    assert LoraJudge(old, device="cpu", precision="bf16").precision == "bf16"  # unless told otherwise


@pytest.mark.parametrize("cpu, record, expected", [
    (AMX_CPU, BOTH_PASS, "bf16"),
    (PLAIN_CPU, BOTH_PASS, "int8"),
    (AMX_CPU, {**BOTH_PASS, "bf16": entry(False)}, "int8"),
    (PLAIN_CPU, {**BOTH_PASS, "int8": entry(False)}, "fp32"),
    (PLAIN_CPU, None, "fp32"),
])
def test_auto_takes_the_fastest_passing_precision_this_cpu_has(monkeypatch, cpu, record, expected):
    on_cpu(monkeypatch, cpu)
    assert prec.choose("auto", device=CPU, record=record).precision == expected
    assert prec.choose("bf16", device=CPU, record=record).precision == "bf16"  # a named precision is used as asked


def test_an_ensemble_runs_its_lora_member_in_the_members_checked_precision(tiny_bert, sample_records, tmp_path):
    # The registry asks each kind which LoRA directory's record decides: the lora judge its own, an
    # ensemble its lora member (checked as loading checks it), every other kind none.
    from judge.core.errors import UserError
    from judge.kinds import precision_directory
    from training.cv import grouped_folds
    from training.ensemble import train_ensemble
    from training.examples import labelled_data
    from training.lora import LoraRecipe

    data = labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")
    folds = grouped_folds(data.records, k=2, group="template", seed=0)
    recipe = LoraRecipe(base_model=tiny_bert, epochs=1, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=64, max_length=48, seed=0)
    for name, members in (("ens", ["lora", "tfidf"]), ("plain", ["tfidf", "rules"])):
        train_ensemble(data, tmp_path / name, folds=folds, recipe=recipe, members=members, progress=False)
        finish(tmp_path / name, data.taxonomy, training_ids=data.records["id"])
    member = tmp_path / "ens" / "members" / "lora"
    assert precision_directory(str(tmp_path / "ens")) == member
    assert precision_directory(f"ensemble:{tmp_path / 'ens'}") == member
    assert precision_directory(str(member)) == member
    assert precision_directory(str(tmp_path / "plain")) is None  # no lora member: nothing to choose
    assert precision_directory("rules") is None and precision_directory(str(tmp_path / "ens" / "members" / "tfidf")) is None
    meta = json.loads((tmp_path / "ens" / "judge.json").read_text())
    meta["member_dirs"]["lora"] = "../../elsewhere"
    (tmp_path / "ens" / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(UserError):  # an edited judge.json is refused before a member outside it is followed
        precision_directory(str(tmp_path / "ens"))


def test_int8_is_refused_on_a_gpu():
    with pytest.raises(prec.UserError, match="int8 inference runs on CPU only"):
        prec.choose("int8", device=torch.device("cuda"), record=BOTH_PASS)


def test_cpu_info_names_the_model_and_the_deciding_flags():
    from pathlib import Path

    info = prec.cpu_info()
    assert info["model"] and set(info["flags"]) <= set(prec.CPU_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        line = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags"))
        assert set(info["flags"]) == set(prec.CPU_FLAGS) & set(line.split(":", 1)[1].split())


# -- the paths ---------------------------------------------------------------------------------

def test_bf16_path_runs_and_is_recorded(trained_tiny, label_input, tmp_path, capsys):
    out = tmp_path / "bf16.jsonl"
    code, _, err = run_cli(label_cmd, label_argv(trained_tiny[0], label_input, out, "--precision", "bf16"), capsys)
    assert code == 0, err
    assert "precision: bf16 (asked for" in err
    manifest = json.loads((tmp_path / "bf16.jsonl.manifest.json").read_text())
    assert manifest["judge"]["precision"] == "bf16" and manifest["identity"]["settings"]["precision"] == "bf16"
    assert manifest["judge"]["cpu"] == prec.cpu_info()
    code, _, err = run_cli(label_cmd, label_argv(trained_tiny[0], label_input, tmp_path / "fp32.jsonl", "--precision", "fp32"), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "fp32.jsonl.manifest.json").read_text())["judge"]["precision"] == "fp32"
    bf16, fp32 = pd.read_json(out, lines=True), pd.read_json(tmp_path / "fp32.jsonl", lines=True)
    assert np.abs(probabilities(bf16) - probabilities(fp32)).mean() <= prec.MEAN_ABS_PROB_DIFF_MAX
    # what bf16 is on CPU: Linear weights in bf16, the classifier head, embeddings and LayerNorm in fp32
    model = LoraJudge(trained_tiny[0], device="cpu", precision="bf16").model
    assert model.bert.encoder.layer[0].intermediate.dense.weight.dtype == torch.bfloat16
    assert model.classifier.weight.dtype == model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    assert model.bert.encoder.layer[0].output.LayerNorm.weight.dtype == torch.float32


def test_auto_is_resolved_once_and_a_resume_on_another_cpu_is_refused(trained_tiny, label_input, tmp_path, capsys, monkeypatch):
    judge_dir = with_record(trained_tiny[0], tmp_path / "judge", BOTH_PASS)
    out = tmp_path / "out.jsonl"
    argv = label_argv(judge_dir, label_input, out)
    on_cpu(monkeypatch, AMX_CPU)
    calls = []
    real_choose = prec.choose
    monkeypatch.setattr(prec, "choose", lambda *a, **k: calls.append(a) or real_choose(*a, **k))
    real_append = JsonlCheckpoint.append

    def die_after_first_batch(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", die_after_first_batch)
    assert run_cli(label_cmd, argv, capsys)[0] == 130
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)
    assert len(calls) == 1  # judge.label resolved auto; the judge it loaded did not resolve again
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["identity"]["settings"]["precision"] == "bf16" and manifest["settings"]["precision"] == "auto"
    on_cpu(monkeypatch, PLAIN_CPU)  # the same command on a CPU without bf16 resolves auto to int8
    assert_refused(label_cmd, argv, ["out.jsonl was labelled in precision bf16", "gives int8 here", "--precision bf16"],
                   root=tmp_path, capsys=capsys)
    code, stdout, err = run_cli(label_cmd, [*argv, "--precision", "bf16"], capsys)  # finished in the precision it began in
    assert code == 0 and "resumed" in stdout, err
    assert json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["judge"]["precision"] == "bf16"


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("precision, atol", [("bf16", 2e-2), ("int8", 1e-5)])
def test_first_token_last_layer_gives_the_full_models_logits_in_each_precision(tiny_bert, attention, precision, atol):
    """int8 keeps the last layer in fp32, so there the two agree to fp32 rounding; bf16 to bf16 rounding."""
    import copy

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from judge.kinds.lora.forward import first_token_only

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=6, attn_implementation=attention).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    enc = tokenizer(["Write about [NAME].", "Hi"], ["Sure, here is a long story about a trip to the sea and back.", "No."],
                    padding=True, return_tensors="pt")
    full = prec.prepare(copy.deepcopy(model), precision, CPU)
    fast = prec.prepare(first_token_only(copy.deepcopy(model)), precision, CPU)
    assert getattr(fast.bert.encoder.layer[-1], "first_token_only", False)
    with torch.inference_mode(), prec.context(precision, CPU):
        expected, got = full(**enc).logits.float(), fast(**enc).logits.float()
    assert torch.allclose(got, expected, atol=atol), (got - expected).abs().max()
    with torch.inference_mode():
        reference = model(**enc).logits
    assert (expected - reference).abs().max() > 0  # the precision did change the arithmetic


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-5), ("bf16", 2e-2)])
def test_length_sorted_padded_batches_match_single_items(trained_tiny, sample_records, precision, atol):
    judge = LoraJudge(trained_tiny[0], device="cpu", precision=precision)
    subset = sample_records.head(16)
    batched, single = judge.label(subset, batch_size=8, progress=False), judge.label(subset, batch_size=1, progress=False)
    cols = [c for c in batched.columns if c.startswith("p_")]
    assert np.abs(batched[cols].to_numpy(float) - single[cols].to_numpy(float)).max() <= atol


def test_merged_cache_is_keyed_on_the_weights_dtype(trained_tiny):
    from judge.engines.models import cache_root

    LoraJudge(trained_tiny[0], device="cpu", precision="bf16")
    assert (cache_root() / "merged-judges" / f"{directory_key(trained_tiny[0])}-float32" / "config.json").exists()
    assert not (cache_root() / "merged-judges" / directory_key(trained_tiny[0])).exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_fresh_merge_and_the_cached_merge_label_alike(trained_tiny, sample_records, tmp_path, monkeypatch, precision):
    """A fresh merge froze the base's parameters only, the cache's load none; CPU kernels differ with
    requires_grad, so the two gave probabilities a few ulps apart and a resumed run other bytes."""
    monkeypatch.setenv("SAFEGUARD_AUDIT_CACHE", str(tmp_path / "cache"))
    fresh = LoraJudge(trained_tiny[0], device="cpu", precision=precision)
    cached = LoraJudge(trained_tiny[0], device="cpu", precision=precision)
    assert not any(p.requires_grad for p in fresh.model.parameters()) and not any(p.requires_grad for p in cached.model.parameters())
    subset = sample_records.head(24)
    a, b = fresh.label(subset, batch_size=5, progress=False), cached.label(subset, batch_size=5, progress=False)
    cols = [c for c in a.columns if c.startswith("p_")]
    assert np.array_equal(a[cols].to_numpy(float), b[cols].to_numpy(float))


def test_agree_notes_the_precision_the_labels_came_from(trained_tiny, label_input, tmp_path, capsys):
    labelled = tmp_path / "l.jsonl"
    code, _, err = run_cli(label_cmd, label_argv(trained_tiny[0], label_input, labelled, "--precision", "bf16"), capsys)
    assert code == 0, err
    code, stdout, err = run_cli(agree_cmd, [str(labelled), "--gold", "label", "--pred", "j_label", "--taxonomy", "chehbouni2024",
                                            "--bootstrap", "50", "--out", str(tmp_path / "agreement")], capsys)
    assert code == 0, err
    assert "precision=bf16" in stdout
    assert "Judge labels computed in bf16" in (tmp_path / "agreement" / "agreement.md").read_text()


# -- refused -----------------------------------------------------------------------------------

def fp32_partial(judge_dir, label_input, tmp_path, capsys, monkeypatch):
    """An output begun in fp32 and killed after its first batch."""
    real_append = JsonlCheckpoint.append

    def die(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", die)
    assert run_cli(label_cmd, label_argv(judge_dir, label_input, tmp_path / "out.jsonl", "--precision", "fp32"), capsys)[0] == 130
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)


def malformed_record(judge_dir, label_input, tmp_path, capsys, monkeypatch):
    with_record(judge_dir, tmp_path / "bad-judge", {"checked_on": "many", "bf16": {"passed": "yes"}})


CASES = [
    ("unknown precision", None, ["--precision", "fp16"], ["--precision must be one of auto, fp32, bf16, int8", "'fp16'"]),
    ("precision for the rules", None, ["--judge", "rules", "--precision", "bf16"], ["--precision applies to the LoRA judge", "not the keyword rules judge", "drop it"]),
    ("precision for tfidf", None, ["--judge", "tfidf:{t}/x", "--precision", "int8"], ["--precision applies to the LoRA judge", "not the TF-IDF judge"]),
    ("resume in another precision", fp32_partial, ["--precision", "int8"], ["out.jsonl was labelled in precision fp32", "--precision fp32", "--overwrite"]),
    ("malformed record", malformed_record, ["--judge", "{t}/bad-judge"], ["bad-judge/judge.json", "'precision' is not a faithfulness record", "retrain"]),
]


@pytest.mark.parametrize("name, setup, extra, fragments", CASES, ids=[c[0] for c in CASES])
def test_refused(trained_tiny, label_input, tmp_path, capsys, monkeypatch, name, setup, extra, fragments):
    if setup:
        setup(trained_tiny[0], label_input, tmp_path, capsys, monkeypatch)
    extra = [a.replace("{t}", str(tmp_path)) for a in extra]
    argv = label_argv(trained_tiny[0], label_input, tmp_path / "out.jsonl")
    if "--judge" in extra:  # the case names its own judge
        i = extra.index("--judge")
        argv[1], extra = extra[i + 1], extra[:i] + extra[i + 2:]
    assert_refused(label_cmd, [*argv, *extra], fragments, root=tmp_path, capsys=capsys)
