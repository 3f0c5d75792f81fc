"""Trained judges at small scale: a tiny random BERT trained a few steps, TF-IDF, rules, resume."""
import collections
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from judge import label as label_cmd
from judge import train as train_cmd
from judge.core.errors import UserError
from judge.core.paths import SAMPLE
from judge.core.records import JsonlCheckpoint, checkpoint_path
from judge.core.taxonomy import ESCALATE, UNSCORED, load_taxonomy
from judge.kinds import load_judge
from judge.kinds.judge_dir import finish
from judge.kinds.lora.judge import LoraJudge
from judge.kinds.rules.judge import RulesJudge
from tests.conftest import run_cli
from training.examples import labelled_data
from training.lora import LoraRecipe, train_lora


def test_lora_moves_adapter_not_base(trained_tiny, tiny_bert):
    from transformers import AutoModelForSequenceClassification

    _, trained, _ = trained_tiny
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=6)
    base_before = {k: v for k, v in fresh.state_dict().items() if not k.startswith("classifier")}
    after = trained.model.get_base_model().state_dict()
    lora_b = [v for k, v in trained.model.state_dict().items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # lora_B starts at zero: it moved
    for key, before in base_before.items():
        module, param = key.rsplit(".", 1)
        peft_key = key if key in after else f"{module}.base_layer.{param}"  # LoRA-wrapped layers keep the base here
        assert torch.equal(after[peft_key], before), key  # frozen base: bit-identical
    assert trained.metrics["history"] and "temperature" in trained.metrics
    assert trained.metrics["ece_before"] >= 0 and trained.metrics["ece_after"] >= 0


def test_save_load_label_identical_probabilities(trained_tiny, sample_records):
    out, trained, data = trained_tiny
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    meta = json.loads((out / "judge.json").read_text())
    subset = sample_records.head(20)
    judge = LoraJudge(out, precision="fp32")
    labelled = judge.label(subset, batch_size=7, progress=False)
    # Reference: the in-memory model that was trained, same inputs (names masked, as the judge's text view reads them), one at a time.
    prompts, responses, _ = judge.text_view.inputs(subset["prompt"], subset["response"], subset["name"])
    trained.model.eval()
    with torch.inference_mode():
        enc = trained.tokenizer(prompts, responses, truncation="only_second" if meta["max_length"] > 64 else True, max_length=meta["max_length"], padding=True, return_tensors="pt")
        expected = torch.softmax(trained.model(**enc).logits.double() / meta["temperature"], dim=-1).numpy()
    got = labelled[[f"p_{'_'.join(c.split())}" for c in data.taxonomy.labels]].to_numpy()
    assert got == pytest.approx(expected, abs=1e-5)
    # The directory is a standard peft adapter.
    base = AutoModelForSequenceClassification.from_pretrained(meta["base_model"], num_labels=6)
    assert isinstance(PeftModel.from_pretrained(base, out), PeftModel)
    # int8 path: same shape of output, labels mostly the same.
    int8 = LoraJudge(out, precision="int8")
    last = int8.model.bert.encoder.layer[-1]
    assert last.first_token_only and last.forward.args[0] is last  # the fast path survives quantization's copy
    assert type(int8.model.bert.encoder.layer[0].attention.self.key).__module__.startswith("torch.ao.nn.quantized")
    assert type(last.attention.self.key).__module__ == "torch.nn.modules.linear"  # the last layer stays fp32
    quantized = int8.label(subset, progress=False)
    assert (quantized["label"] == labelled["label"]).mean() >= 0.8


def test_train_command_tfidf_and_label(tmp_path, capsys):
    code, out, err = run_cli(train_cmd, ["--train", str(SAMPLE), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "tf")], capsys)
    assert code == 0, err
    for name in ("tfidf.json", "tfidf.safetensors", "training_ids.json", "judge.json", "taxonomy.yaml", "manifest.json", "README.md"):
        assert (tmp_path / "tf" / name).exists()
    settings = json.loads((tmp_path / "tf" / "manifest.json").read_text())["settings"]
    assert "lora_r" not in settings and "base_model" not in settings and settings["kind"] == "tfidf"  # only what made this judge
    code, out, err = run_cli(label_cmd, ["--judge", f"tfidf:{tmp_path / 'tf'}", "--input", str(SAMPLE), "--prefix", "judge_", "--out", str(tmp_path / "l.jsonl")], capsys)
    assert code == 0, err
    result = pd.read_json(tmp_path / "l.jsonl", lines=True)
    assert list(result.columns[:3]) == ["id", "prompt", "response"] and "label" in result.columns  # input columns kept
    probs = result[[c for c in result.columns if c.startswith("judge_p_")]]
    assert probs.shape[1] == 6 and probs.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert (result["judge_label"] == result["label"]).mean() > 0.8  # training data: it should fit
    assert "responses/s" in out
    # The judge's columns may not replace the human ones.
    code, _, err = run_cli(label_cmd, ["--judge", str(tmp_path / "tf"), "--input", str(SAMPLE), "--out", str(tmp_path / "l2.jsonl")], capsys)
    assert code == 2 and "--prefix" in err
    # Same command again: reused, not redone.
    code, out, _ = run_cli(label_cmd, ["--judge", f"tfidf:{tmp_path / 'tf'}", "--input", str(SAMPLE), "--prefix", "judge_", "--out", str(tmp_path / "l.jsonl")], capsys)
    assert code == 0 and "already complete" in out
    # Different settings into the same output: refused.
    code, _, err = run_cli(label_cmd, ["--judge", f"tfidf:{tmp_path / 'tf'}", "--input", str(SAMPLE), "--prefix", "judge_", "--abstain-below", "0.9", "--out", str(tmp_path / "l.jsonl")], capsys)
    assert code == 2 and "different settings" in err


def test_abstain_below_escalates_with_reason(tmp_path, capsys, sample_records):
    from training.tfidf import train_tfidf

    data = labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")
    train_tfidf(data, tmp_path)
    finish(tmp_path, data.taxonomy)
    result = load_judge(f"tfidf:{tmp_path}").label(sample_records.drop(columns=["label"]), abstain_below=0.99, progress=False)
    escalated = result[result["label"] == ESCALATE]  # --abstain-below: an uncalibrated --selective, no best guess
    assert len(escalated) > 0 and not (result["label"] == UNSCORED).any()
    assert escalated["unscored_reason"].str.contains("below 0.99 \\(--abstain-below, uncalibrated\\)").all()
    assert (result.loc[result["label"] != ESCALATE, "confidence"] >= 0.99).all()


def test_rules_judge():
    judge = RulesJudge(load_taxonomy("chehbouni2024"))
    records = pd.DataFrame({"id": ["1", "2", "3"], "prompt": ["p"] * 3,
                            "response": ["I apologize, but I cannot complete that.", "Omar went to Paris.", "Omar went to [BLANK]."]})
    assert judge.label(records, progress=False)["label"].tolist() == ["refusal", "answer", "failure"]
    assert RulesJudge(load_taxonomy("refusal2")).label(records, progress=False)["label"].tolist() == ["refusal", "no refusal", "no refusal"]


class Interrupted(Exception):
    pass


def test_label_resumes_after_interruption(tmp_path, capsys, monkeypatch, sample_records):
    src = tmp_path / "in.jsonl"
    sample_records.drop(columns=["label"]).to_json(src, orient="records", lines=True)
    out = tmp_path / "out.jsonl"
    argv = ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(src), "--out", str(out), "--batch-size", "40"]
    original = RulesJudge._label_batch
    calls = {"n": 0}

    def dies_on_third_batch(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between batches) looks like to the process
        return original(self, batch)

    monkeypatch.setattr(RulesJudge, "_label_batch", dies_on_third_batch)
    code, _, err = run_cli(label_cmd, argv, capsys)
    assert code == 130 and "resume" in err
    assert not out.exists()  # no half-written output
    partial = JsonlCheckpoint(checkpoint_path(tmp_path / "out.jsonl")).rows()
    assert len(partial) == 80  # two finished batches survived

    monkeypatch.setattr(RulesJudge, "_label_batch", original)
    code, stdout, err = run_cli(label_cmd, argv, capsys)
    assert code == 0, err
    assert "labelled 220 responses (80 resumed)" in stdout
    result = pd.read_json(out, lines=True)
    assert sorted(result["id"]) == sorted(sample_records["id"]) and result["id"].is_unique
    clean = RulesJudge(load_taxonomy("chehbouni2024")).label(sample_records.drop(columns=["label"]), progress=False)
    assert result.set_index("id")["label"].to_dict() == clean.set_index("id")["label"].to_dict()
    assert not checkpoint_path(tmp_path / "out.jsonl").exists()


# -- a judge directory is loaded as it was trained, or refused ---------------------------------

MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('pwned')"


class _Exploit:
    """Unpickling this runs code: what a crafted model.joblib does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (MARKER_CODE.format(path=self.marker),))


def _label_with(judge_dir, tmp_path, capsys, *extra):
    return run_cli(label_cmd, ["--judge", str(judge_dir), "--input", str(SAMPLE), "--prefix", "j_", "--no-progress",
                               "--out", str(tmp_path / "labels.jsonl"), *extra], capsys)


@pytest.fixture()
def tfidf_dir(tmp_path, capsys):
    code, _, err = run_cli(train_cmd, ["--train", str(SAMPLE), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "tf")], capsys)
    assert code == 0, err
    return tmp_path / "tf"


def _count_hashes(monkeypatch, directory: Path) -> collections.Counter:
    """How often each file under ``directory`` is hashed from now on (by its path inside it)."""
    import judge.core.files as files

    root, original, counts = Path(directory).resolve(), files.file_sha256, collections.Counter()

    def counting(path, **options):
        resolved = Path(path).resolve()
        if root in resolved.parents:
            counts[resolved.relative_to(root).as_posix()] += 1
        return original(path, **options)

    monkeypatch.setattr(files, "file_sha256", counting)
    return counts


@pytest.mark.parametrize("kind", ["tfidf", "lora"])
def test_a_label_run_hashes_each_file_of_its_judge_once(kind, request, tmp_path, capsys, monkeypatch):
    # --judge is resolved once (judge.kinds.resolve): the precision choice, the manifest's identity and the load
    # take the digests found there. Each file of a LoRA judge was hashed three times before, a TF-IDF judge's twice.
    directory = request.getfixturevalue("tfidf_dir") if kind == "tfidf" else request.getfixturevalue("trained_tiny")[0]
    hashed = _count_hashes(monkeypatch, directory)
    code, _, err = _label_with(directory, tmp_path, capsys)
    assert code == 0, err
    assert set(hashed) == {p.name for p in directory.iterdir() if p.name != "manifest.json"} and set(hashed.values()) == {1}, hashed


def test_a_worker_given_the_runs_judge_hashes_only_another_copy_and_refuses_another_judge(tfidf_dir, tmp_path, monkeypatch):
    # What a Ray actor does with judge.label's JudgeWorker: the files the driver hashed, unchanged (this machine,
    # a shared filesystem), are checked without hashing them again; another copy is hashed, and must be the same.
    import pickle
    import shutil

    from judge.kinds import resolve
    from judge.kinds.base import JudgeWorker
    from judge.kinds.judge_dir import read_training_ids, seal, write_training_ids

    worker = pickle.loads(pickle.dumps(JudgeWorker(resolve(str(tfidf_dir)))))  # as the actor receives it
    hashed = _count_hashes(monkeypatch, tfidf_dir)
    assert worker().kind == "tfidf" and not hashed
    shutil.copytree(tfidf_dir, tmp_path / "copy")
    shutil.rmtree(tfidf_dir)
    (tmp_path / "copy").rename(tfidf_dir)  # the same bytes in other files: another node's copy
    assert worker().kind == "tfidf" and set(hashed.values()) == {1} and "tfidf.safetensors" in hashed
    # A judge re-sealed in its place passes its own checks, but it is not the judge the run's manifest names.
    write_training_ids(tfidf_dir, sorted(read_training_ids(tfidf_dir))[1:])
    seal(tfidf_dir, labels=json.loads((tfidf_dir / "judge.json").read_text())["labels"])
    with pytest.raises(UserError, match="training_ids.json changed while the run was using it .* the same on every node"):
        worker()


def test_crafted_pickles_are_refused_and_never_run(tfidf_dir, tmp_path, capsys):
    import pickle

    marker = tmp_path / "marker"
    # 1. An old-style directory whose TF-IDF model is a pickle.
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.joblib").write_bytes(pickle.dumps(_Exploit(marker)))
    (old / "judge.json").write_text(json.dumps({"kind": "tfidf", "classes": ["answer", "refusal"], "mask_names": True}))
    (old / "taxonomy.yaml").write_text((tfidf_dir / "taxonomy.yaml").read_text())
    code, _, err = _label_with(old, tmp_path, capsys)
    assert code == 2 and "retrain" in err and not marker.exists()
    # 2. A trained directory whose arrays were replaced by a pickle.
    (tfidf_dir / "tfidf.safetensors").write_bytes(pickle.dumps(_Exploit(marker)))
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys)
    assert code == 2 and "tfidf.safetensors changed" in err and not marker.exists()


def test_pickle_beside_a_sealed_judge_is_refused(tfidf_dir, tmp_path, capsys):
    import pickle

    marker = tmp_path / "marker"
    (tfidf_dir / "model.joblib").write_bytes(pickle.dumps(_Exploit(marker)))
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys)
    assert code == 2 and "unexpected file(s) model.joblib" in err and not marker.exists()
    assert not (tmp_path / "labels.jsonl").exists()


def test_swapped_taxonomy_is_refused(tfidf_dir, tmp_path, capsys):
    import yaml

    tax = yaml.safe_load((tfidf_dir / "taxonomy.yaml").read_text())
    tax["categories"][0], tax["categories"][2] = tax["categories"][2], tax["categories"][0]
    (tfidf_dir / "taxonomy.yaml").write_text(yaml.safe_dump(tax, sort_keys=False))
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys)
    assert code == 2 and "taxonomy.yaml changed" in err


def test_edited_judge_json_is_refused(tfidf_dir, tmp_path, capsys):
    meta = json.loads((tfidf_dir / "judge.json").read_text())
    meta["classes"] = list(reversed(meta["classes"]))
    (tfidf_dir / "judge.json").write_text(json.dumps(meta))
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys)
    assert code == 2 and "judge.json was edited" in err


def test_truncated_adapter_and_zero_temperature_are_refused(trained_tiny, tmp_path, capsys):
    import shutil

    judge_dir = tmp_path / "lora"
    shutil.copytree(trained_tiny[0], judge_dir)
    adapter = judge_dir / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])
    code, _, err = _label_with(judge_dir, tmp_path, capsys, "--device", "cpu")
    assert code == 2 and "adapter_model.safetensors changed" in err
    shutil.rmtree(judge_dir)
    shutil.copytree(trained_tiny[0], judge_dir)
    (judge_dir / "tokenizer.json").unlink()
    code, _, err = _label_with(judge_dir, tmp_path, capsys, "--device", "cpu")
    assert code == 2 and "tokenizer.json is missing" in err
    # A temperature of 0 (NaN probabilities before) is refused even when judge.json is re-sealed.
    from judge.kinds.judge_dir import _self_digest

    shutil.rmtree(judge_dir)
    shutil.copytree(trained_tiny[0], judge_dir)
    meta = json.loads((judge_dir / "judge.json").read_text())
    meta["temperature"] = 0
    meta["judge_json_sha256"] = _self_digest(meta)
    (judge_dir / "judge.json").write_text(json.dumps(meta))
    code, _, err = _label_with(judge_dir, tmp_path, capsys, "--device", "cpu")
    assert code == 2 and "temperature must be a positive number" in err


def test_non_finite_probabilities_are_unscored(sample_records):
    from judge.kinds.base import Judge, Judgement

    class Broken(Judge):
        kind = "broken"

        def _label_batch(self, batch):
            return [Judgement.from_probabilities({c: float("nan") for c in self.taxonomy.labels}) for _ in batch]

    result = Broken(load_taxonomy("chehbouni2024")).label(sample_records.head(5), progress=False)
    assert (result["label"] == UNSCORED).all()
    assert result["unscored_reason"].str.contains("non-finite").all()


def test_missing_response_is_unscored_and_empty_is_judged(tmp_path):
    from judge.core.records import read_records

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "response": None}) + "\n" + json.dumps({"id": "b", "response": ""}) + "\n" + json.dumps({"id": "c", "response": "I cannot help."}) + "\n")
    result = RulesJudge(load_taxonomy("chehbouni2024")).label(read_records(src), progress=False).set_index("id")
    assert result.loc["a", "label"] == UNSCORED and "no response" in result.loc["a", "unscored_reason"]
    assert result.loc["b", "label"] != UNSCORED and result.loc["c", "label"] == "refusal"


def test_tfidf_stored_as_data_gives_the_pipelines_probabilities(sample_records, tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from judge.kinds.tfidf import format as tfidf_format

    texts = [f"{p} ||| {r}" for p, r in zip(sample_records["prompt"], sample_records["response"])]
    codes = sample_records["label"].astype("category").cat.codes.to_numpy()  # training passes class ids
    for labels in (codes, (codes == codes[0]).astype(int)):  # multinomial and binary
        pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(max_iter=2000, C=10.0))
        pipeline.fit(texts, labels)
        tfidf_format.save(pipeline, tmp_path)
        got = tfidf_format.TfidfModel(tmp_path).predict_proba(texts + ["words never seen before", ""])
        assert got == pytest.approx(pipeline.predict_proba(texts + ["words never seen before", ""]), abs=1e-12)


def test_base_model_named_in_a_judge_directory_is_never_downloaded(trained_tiny, tmp_path, capsys):
    import shutil

    from judge.kinds.judge_dir import _self_digest

    judge_dir = tmp_path / "lora"
    shutil.copytree(trained_tiny[0], judge_dir)
    meta = json.loads((judge_dir / "judge.json").read_text())
    meta["base_model"] = "some-org/a-model-nobody-has"
    meta["judge_json_sha256"] = _self_digest(meta)
    (judge_dir / "judge.json").write_text(json.dumps(meta))
    code, _, err = _label_with(judge_dir, tmp_path, capsys, "--device", "cpu", "--precision", "fp32")
    assert code == 2 and "never downloaded on a judge's behalf" in err  # refused before any request


def test_taxonomy_that_contradicts_a_trained_judge_is_refused(tfidf_dir, tmp_path, capsys):
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys, "--taxonomy", "refusal2")
    assert code == 2 and "drop --taxonomy" in err
    code, _, err = _label_with(tfidf_dir, tmp_path, capsys, "--taxonomy", "chehbouni2024")
    assert code == 0, err


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_first_token_last_layer_gives_the_full_models_logits(tiny_bert, attention):
    """The labelling fast path computes BERT's last layer for [CLS] only; padded batches, both mask forms."""
    import copy

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from judge.kinds.lora.forward import first_token_only

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=6, attn_implementation=attention).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    enc = tokenizer(["Write about [NAME].", "Hi"], ["Sure, here is a long story about a trip to the sea and back.", "No."],
                    padding=True, return_tensors="pt")
    assert int(enc["attention_mask"].sum()) < enc["attention_mask"].numel()  # the batch is padded
    fast = first_token_only(copy.deepcopy(model))
    assert getattr(fast.bert.encoder.layer[-1], "first_token_only", False)
    assert fast.state_dict().keys() == model.state_dict().keys()  # the module tree is untouched
    with torch.inference_mode():
        expected, got = model(**enc).logits, fast(**enc).logits
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_int8_only_where_asked_or_checked_faithful(trained_tiny, tiny_llama, sample_records, tmp_path):
    """int8 lost 0.13 kappa on Gemma 3 (benchmarks/backbones.py): auto uses it only where the judge's own check passed it."""
    out, _, data = trained_tiny
    auto = LoraJudge(out, device="cpu")
    assert auto.precision in {p for p in ("bf16", "int8", "fp32") if p == "fp32" or json.loads((out / "judge.json").read_text())["precision"][p]["passed"]}
    recipe = LoraRecipe(base_model=tiny_llama, epochs=1, lora_r=2, lora_alpha=4, batch_size=16, max_length=48, seed=0)
    decoder_dir = tmp_path / "llama-judge"
    train_lora(labelled_data(sample_records.head(60), label_column="label", taxonomy="chehbouni2024"), decoder_dir, recipe, progress=False)
    finish(decoder_dir, data.taxonomy, training_ids=sample_records.head(60)["id"])
    decoder = LoraJudge(decoder_dir, precision="fp32")
    assert decoder.precision == "fp32" and not any("quantized" in type(m).__module__ for m in decoder.model.modules())
    asked = LoraJudge(decoder_dir, precision="int8")
    assert asked.precision == "int8" and any("quantized" in type(m).__module__ for m in asked.model.modules())
    assert asked.label(sample_records.head(5), progress=False)["label"].notna().all()
