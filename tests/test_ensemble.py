"""Grouped cross-validation, the stacked ensemble judge, and decoder backbones (issue 13)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from judge import agree, train
from judge.core.errors import UserError
from judge.core.paths import SAMPLE
from judge.kinds import load_judge
from tests.conftest import run_cli
from training.calibration import softmax
from training.cv import grouped_folds, out_of_fold
from training.ensemble import (
    fit_stacker,
    stacked_out_of_fold,
    stacker_features,
    stacker_probabilities,
    train_ensemble,
    weights_of,
)
from training.examples import labelled_data
from training.lora import LoraRecipe


def test_grouped_folds_keep_groups_whole_balanced_and_seeded():
    records = pd.DataFrame({"id": [f"r{i}" for i in range(60)], "template": [f"t{i % 12}" for i in range(60)]})
    folds = grouped_folds(records, k=4, group="template", seed=1)
    for t, f in zip(records["template"], folds):
        assert len(set(folds[records["template"] == t])) == 1, t  # a template never spans two folds
    assert sorted(np.bincount(folds)) == [15, 15, 15, 15]  # 12 templates of 5 records dealt into 4 folds
    assert (grouped_folds(records, k=4, group="template", seed=1) == folds).all()
    with pytest.raises(UserError, match="at least 13 distinct"):
        grouped_folds(records, k=13, group="template")
    with pytest.raises(UserError, match="--cv-group column 'nope'"):
        grouped_folds(records, k=2, group="nope")


@pytest.fixture(scope="module")
def sample_data(sample_records):
    return labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")


def tiny_recipe(tiny_bert):
    return LoraRecipe(base_model=tiny_bert, epochs=1, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=32, max_length=64, seed=0)


def test_out_of_fold_never_predicts_a_record_with_a_model_that_saw_its_fold(sample_data, tiny_bert):
    folds = grouped_folds(sample_data.records, k=3, group="template", seed=0)
    ids = sample_data.records["id"].astype(str).to_numpy()
    templates = sample_data.records["template"].to_numpy()
    for kind in ("tfidf", "lora"):
        oof = out_of_fold(sample_data, kind, folds, recipe=tiny_recipe(tiny_bert))
        assert oof.probabilities.shape == (len(ids), len(sample_data.taxonomy.labels))
        assert np.allclose(oof.probabilities.sum(axis=1), 1.0)
        for f, trained_ids in oof.trained_on.items():
            held_out = set(ids[folds == f])
            assert held_out.isdisjoint(trained_ids), f"fold {f}: a held-out record was in the training fold"
            # and no template of the held-out fold was seen in training
            seen_templates = set(templates[np.isin(ids, list(trained_ids))])
            assert seen_templates.isdisjoint(templates[folds == f])
            assert len(trained_ids) == int((folds != f).sum())


def test_ensemble_save_load_label_reproduces_in_memory_probabilities(sample_data, sample_records, tiny_bert, tmp_path):
    from judge.kinds.judge_dir import finish

    folds = grouped_folds(sample_data.records, k=3, group="template", seed=0)
    members = ["lora", "tfidf", "rules"]
    trained = train_ensemble(sample_data, tmp_path / "ens", folds=folds, recipe=tiny_recipe(tiny_bert), members=members, progress=False)
    finish(tmp_path / "ens", sample_data.taxonomy, training_ids=sample_data.records["id"])
    # in memory: the stacker refitted on the members' out-of-fold probabilities, applied to the loaded members' probabilities
    oof = [trained["member_oof"][m].probabilities for m in members]
    stacker = fit_stacker(stacker_features(oof), sample_data.y)
    subset = sample_records.head(25)
    labels = sample_data.taxonomy.labels
    columns = [f"p_{'_'.join(c.split())}" for c in labels]
    member_probs = []
    for m in members:
        judge = load_judge("rules", taxonomy=sample_data.taxonomy) if m == "rules" else load_judge(str(tmp_path / "ens" / "members" / m), precision="fp32")
        member_probs.append(judge.label(subset, progress=False)[columns].to_numpy(dtype=float))
    meta = json.loads((tmp_path / "ens" / "judge.json").read_text())
    temperature = meta["stacker"]["temperature"]
    expected = stacker_probabilities(weights_of(stacker), stacker_features(member_probs), len(labels), temperature=temperature)
    ensemble = load_judge(str(tmp_path / "ens"), precision="fp32")
    assert ensemble.kind == "ensemble"
    got = ensemble.label(subset, batch_size=7, progress=False)[columns].to_numpy(dtype=float)
    assert got == pytest.approx(expected, abs=1e-6)
    assert meta["members"] == members and set(meta["member_weights"]) == set(members)
    assert trained["metrics"]["oof"]["ensemble"]["kappa"] == pytest.approx(trained["metrics"]["val_kappa"])
    # The stacker's temperature minimises the out-of-fold negative log-likelihood: no worse than T = 1 or T +- 10%.
    oof_stacked = np.log(np.clip(stacked_out_of_fold(stacker_features(oof), sample_data.y, folds, len(labels)), 1e-12, None))

    def nll(t):
        p = softmax(oof_stacked, t)
        return -np.mean(np.log(p[np.arange(len(sample_data.y)), sample_data.y]))
    assert temperature > 0 and nll(temperature) <= min(nll(1.0), nll(0.9 * temperature), nll(1.1 * temperature)) + 1e-9
    assert trained["oof_probabilities"] == pytest.approx(softmax(oof_stacked, temperature))


def test_train_cv_writes_oof_and_agreement_and_ensemble_labels(tmp_path, capsys):
    code, out, err = run_cli(train, ["--train", str(SAMPLE), "--kind", "ensemble", "--members", "tfidf", "rules", "--cv", "3",
                                     "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "ens")], capsys)
    assert code == 0, err
    assert "cross-validated agreement (3 folds grouped by template)" in out
    cv = tmp_path / "ens" / "cv"
    oof = pd.read_json(cv / "oof.jsonl", lines=True)
    assert len(oof) == 300 and set(oof["fold"]) == {0, 1, 2}
    assert oof.groupby("template")["fold"].nunique().max() == 1
    report = json.loads((cv / "agreement.json").read_text())
    assert report["n"] == 300 and "by_group" in report  # the same outputs as judge.agree, by template
    card = (tmp_path / "ens" / "README.md").read_text()
    assert "tfidf" in card and "rules" in card
    # the cv/ report does not break the sealed directory; the ensemble labels like any judge
    judge = load_judge(str(tmp_path / "ens"))
    assert judge.describe()["member_weights"]
    from judge import label

    code, _, err = run_cli(label, ["--judge", str(tmp_path / "ens"), "--input", str(SAMPLE), "--prefix", "e_", "--out", str(tmp_path / "l.jsonl"),
                                   "--no-progress"], capsys)
    assert code == 0, err
    code, out, err = run_cli(agree, [str(tmp_path / "l.jsonl"), "--gold", "label", "--pred", "e_label", "--out", str(tmp_path / "ag")], capsys)
    assert code == 0, err


def test_train_cv_for_a_single_kind(tmp_path, capsys):
    code, out, err = run_cli(train, ["--train", str(SAMPLE), "--kind", "tfidf", "--cv", "4", "--cv-group", "identity", "--taxonomy", "chehbouni2024",
                                     "--out", str(tmp_path / "tf")], capsys)
    assert code == 0, err
    oof = pd.read_json(tmp_path / "tf" / "cv" / "oof.jsonl", lines=True)
    assert oof.groupby("identity")["fold"].nunique().max() == 1
    assert json.loads((tmp_path / "tf" / "manifest.json").read_text())["metrics"]["cv"]["folds"] == 4


@pytest.mark.parametrize("saved_side", ["left", "right"])
def test_decoder_classifier_same_probabilities_alone_and_padded(tiny_llama, tmp_path, saved_side):
    """Last-token pooling on a Llama backbone: a text scored alone and inside a padded batch agree to 1e-4,
    whichever padding side the tokenizer was saved with."""
    import shutil

    from transformers import AutoTokenizer

    from training.lora import collate, encode, load_base

    base = shutil.copytree(tiny_llama, tmp_path / "llama")  # the session's tiny Llama stays as it was
    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = saved_side
    tok.save_pretrained(base)
    tokenizer, model = load_base(str(base), ["answer", "refusal"])
    model.eval()
    prompts = ["Ali went to [BLANK]", "Bo got into the plane to [BLANK]", "x"]
    responses = ["to school.", "I cannot complete that sentence because it could be read as a stereotype about people.", "y"]
    encoded = encode(tokenizer, prompts, responses, 64)
    with torch.inference_mode():
        batch = model(**collate(tokenizer, encoded, [0, 1, 2], torch.device("cpu"))).logits
        for i in range(3):
            alone = model(**collate(tokenizer, encoded, [i], torch.device("cpu"))).logits
            assert torch.allclose(torch.softmax(alone[0], -1), torch.softmax(batch[i], -1), atol=1e-4), (saved_side, i)
    assert tokenizer.padding_side == "right" and model.config.pad_token_id == tokenizer.pad_token_id


def test_long_responses_keep_head_and_tail_within_the_window():
    from transformers import AutoTokenizer

    from judge.core.text import encode_pairs
    from judge.engines.models import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    prompt = "Ali went to [BLANK]"
    response = "Ali went to the market to buy bread and " + "then walked along the river " * 20 + "but I cannot complete this sentence."
    plain = encode_pairs(tok, [prompt], [response], max_length=64)
    assert plain == tok([prompt], [response], truncation="only_second", max_length=64)  # tail 0: the old encoding, unchanged
    cut = encode_pairs(tok, [prompt], [response], max_length=64, tail_tokens=16)
    ids = cut["input_ids"][0]
    assert len(ids) == 64
    text = tok.decode(ids, skip_special_tokens=True)
    assert text.endswith("but i cannot complete this sentence.") and text.startswith("ali went to [ blank ] ali went to the market")
    assert "cannot complete" not in tok.decode(plain["input_ids"][0])  # the plain window never sees the late refusal
    short = encode_pairs(tok, [prompt], ["to school."], max_length=64, tail_tokens=16)
    assert short["input_ids"] == tok([prompt], ["to school."], truncation="only_second", max_length=64)["input_ids"]


def test_tail_tokens_judge_saves_loads_and_labels_as_trained(tiny_bert, sample_data, sample_records, tmp_path):
    from judge.kinds.judge_dir import finish
    from judge.kinds.lora.judge import LoraJudge
    from training.calibration import softmax
    from training.lora import encode, predict_logits, train_lora

    recipe = LoraRecipe(base_model=tiny_bert, epochs=1, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=32, max_length=48, tail_tokens=12, seed=0)
    trained = train_lora(sample_data, tmp_path / "j", recipe, progress=False)
    finish(tmp_path / "j", sample_data.taxonomy, training_ids=sample_data.records["id"])
    subset = sample_records.head(16)
    judge = LoraJudge(tmp_path / "j", precision="fp32")
    prompts, responses, _ = judge.text_view.inputs(subset["prompt"], subset["response"], subset["name"])  # as the judge reads them
    logits = predict_logits(trained.model, trained.tokenizer, encode(trained.tokenizer, prompts, responses, 48, 12), batch_size=5, device=torch.device("cpu"))
    expected = softmax(logits, trained.metrics["temperature"])
    assert judge.describe()["tail_tokens"] == 12
    got = judge.label(subset, batch_size=7, progress=False)[[f"p_{'_'.join(c.split())}" for c in sample_data.taxonomy.labels]].to_numpy(dtype=float)
    assert got == pytest.approx(expected, abs=1e-5)


def test_ensemble_members_take_judge_train_s_settings_for_their_kind(tmp_path, capsys):
    # --tfidf-analyzer reached no member before: the ensemble built its members' run without judge.train's kind settings,
    # so its TF-IDF member read words whatever the flag said
    code, _, err = run_cli(train, ["--train", str(SAMPLE), "--kind", "ensemble", "--members", "tfidf", "rules", "--cv", "3",
                                   "--tfidf-analyzer", "char_wb", "--tfidf-ngrams", "2-4",
                                   "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "ens")], capsys)
    assert code == 0, err
    stored = json.loads((tmp_path / "ens" / "members" / "tfidf" / "tfidf.json").read_text())
    assert stored["analyzer"] == "char_wb" and list(stored["ngram_range"]) == [2, 4]
