"""Issue 34: the frozen-encoder judge (embed) as an ensemble member (--members tfidf embed rules) and as the
cheap first stage of a selective cascade; the run-wide embedding cache leaves what is learned unchanged."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from judge import calibrate as calibrate_cmd
from judge import label as label_cmd
from judge import train as train_cmd
from judge.core.paths import SAMPLE
from judge.core.taxonomy import ESCALATE
from judge.kinds import load_judge
from tests.conftest import module_run, run_cli
from tests.test_judge_dir import reseal


def test_embed_is_a_member_but_not_a_default_one():
    from judge import train
    from judge.kinds import default_members, member_kinds, spec_of
    from judge.kinds.registry import trained_members

    spec = spec_of("embed")
    assert spec.member and not spec.default_member and "embed" in member_kinds() and "embed" in trained_members()
    assert default_members() == ["lora", "tfidf", "rules"]  # what --members defaults to is unchanged
    assert train.build_parser().parse_args(["--members", "tfidf", "embed"]).members == ["tfidf", "embed"]


@pytest.fixture(scope="module")
def halves(tmp_path_factory, sample_records):
    """Half the bundled sample to train on (labelled), the other half to label (no labels)."""
    folder = tmp_path_factory.mktemp("embed-member")
    records = sample_records.sample(frac=1.0, random_state=0)
    records.iloc[:150].to_json(folder / "train.jsonl", orient="records", lines=True)
    records.iloc[150:].drop(columns=["label"]).to_json(folder / "rest.jsonl", orient="records", lines=True)
    return folder


@pytest.fixture(scope="module")
def ensemble_dir(halves, tiny_bert):
    import contextlib
    import io

    out = halves / "ens"
    argv = ["--train", str(halves / "train.jsonl"), "--label-column", "label", "--taxonomy", "chehbouni2024",
            "--kind", "ensemble", "--members", "tfidf", "embed", "rules", "--cv", "3", "--base-model", tiny_bert,
            "--max-length", "64", "--device", "cpu", "--no-progress", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert module_run(train_cmd, argv) == 0, err.getvalue()
    return out


def test_ensemble_with_an_embed_member_trains_describes_and_labels(ensemble_dir, halves, tiny_bert, tmp_path, capsys):
    meta = json.loads((ensemble_dir / "judge.json").read_text())
    assert meta["members"] == ["tfidf", "embed", "rules"]
    assert meta["member_dirs"] == {"tfidf": "members/tfidf", "embed": "members/embed"}  # the rules are code
    assert [f for f in meta["features"] if f.startswith("embed:")] and set(meta["member_weights"]) == set(meta["members"])
    member = json.loads((ensemble_dir / "members" / "embed" / "judge.json").read_text())
    assert member["kind"] == "embed" and member["base_model"] == tiny_bert and member["max_length"] == 64
    assert len(member["base_model_sha256"]) == 64
    card = (ensemble_dir / "README.md").read_text()
    assert f"embed (frozen `{tiny_bert}` embeddings" in card and "tfidf (TF-IDF word 1-2 grams" in card
    # the ensemble's options reach its embed member: --device cpu loads its encoder there
    judge = load_judge(str(ensemble_dir), device="cpu")
    assert str(judge.members["embed"].encoder.device) == "cpu"
    assert judge.describe()["members"]["embed"]["encoder"] == tiny_bert

    out = tmp_path / "l.jsonl"
    code, _, err = run_cli(label_cmd, ["--judge", str(ensemble_dir), "--input", str(halves / "rest.jsonl"), "--prefix",
                                       "e_", "--device", "cpu", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    labelled = pd.read_json(out, lines=True)
    rest = pd.read_json(halves / "rest.jsonl", lines=True)
    assert labelled["id"].tolist() == rest["id"].tolist() and labelled["e_label"].notna().all()
    probabilities = labelled[[c for c in labelled.columns if c.startswith("e_p_")]].to_numpy()
    assert probabilities.shape == (len(rest), len(meta["labels"])) and np.allclose(probabilities.sum(axis=1), 1.0)
    manifest = json.loads((tmp_path / "l.jsonl.manifest.json").read_text())
    assert "embed" in json.dumps(manifest)


def forge_member_holding_tfidf(j, o):
    """members/embed replaced by the TF-IDF member's folder (a sealed judge, but of another kind)."""
    shutil.rmtree(j / "members" / "embed")
    shutil.copytree(j / "members" / "tfidf", j / "members" / "embed")
    reseal(j)


def forge_member_outside(j, o):
    """member_dirs points the embed member at a copy outside the ensemble."""
    shutil.copytree(j / "members" / "embed", o / "em7")
    reseal(j, lambda m: m["member_dirs"].__setitem__("embed", "../outside/em7"))


def forge_member_dropped(j, o):
    """embed stays a member but loses its folder in member_dirs."""
    reseal(j, lambda m: m["member_dirs"].pop("embed"))


@pytest.mark.parametrize("forge, words", [
    (forge_member_holding_tfidf, ["member embed", "holds a tfidf judge, not an embed one", "retrain"]),
    (forge_member_outside, ["member embed", "../outside/em7", "not a folder inside"]),
    (forge_member_dropped, ["member_dirs", "embed"]),
])
def test_forged_embed_member_folder_is_refused(ensemble_dir, halves, tmp_path, capsys, forge, words):
    forged, outside = tmp_path / "forged", tmp_path / "outside"
    shutil.copytree(ensemble_dir, forged)
    outside.mkdir()
    forge(forged, outside)
    code, _, err = run_cli(label_cmd, ["--judge", str(forged), "--input", str(halves / "rest.jsonl"), "--no-progress",
                                       "--out", str(tmp_path / "x.jsonl")], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "x.jsonl").exists()


def test_embedding_cache_embeds_each_pair_once_and_changes_nothing(sample_records, tiny_bert, tmp_path):
    from training.cv import grouped_folds
    from training.embed import CachedEncoder
    from training.ensemble import train_ensemble
    from training.examples import labelled_data
    from training.lora import LoraRecipe

    data = labelled_data(sample_records.iloc[:90], label_column="label", taxonomy="chehbouni2024")
    folds = grouped_folds(data.records, k=3, group="template", seed=0)
    common = dict(folds=folds, recipe=LoraRecipe(base_model=tiny_bert, max_length=64), members=["tfidf", "embed", "rules"],
                  progress=False, options={"device": "cpu"})
    cache = {}
    shared = train_ensemble(data, tmp_path / "shared", cache=cache, **common)
    alone = train_ensemble(data, tmp_path / "alone", share=False, **common)
    # one encoder for the run's 3 folds and its shipped member, each distinct (prompt, response) embedded once
    encoders = [v for v in cache.values() if isinstance(v, CachedEncoder)]
    assert len(encoders) == 1 and encoders[0].computed == len(set(zip(data.prompts, data.responses)))
    # the same judge, bit for bit: an embedding is a function of its pair alone (no padding in the encoder's
    # batches), so a cached vector is the one a fresh embedding gives; hence equality, not closeness
    np.testing.assert_array_equal(shared["member_oof"]["embed"].probabilities, alone["member_oof"]["embed"].probabilities)
    np.testing.assert_array_equal(shared["oof_probabilities"], alone["oof_probabilities"])
    files = ("members/embed/embed.safetensors", "members/embed/judge.json", "stacker.safetensors")
    for name in files:
        assert (tmp_path / "shared" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name


def test_an_embedding_depends_on_its_pair_alone(sample_records, tiny_bert):
    from judge.kinds.embed.format import Encoder

    encoder = Encoder(tiny_bert, max_length=64, device="cpu")
    prompts, responses = sample_records["prompt"].astype(str).tolist()[:40], sample_records["response"].astype(str).tolist()[:40]
    together = encoder.embed(prompts, responses, batch_size=8)
    alone = np.vstack([encoder.embed([p], [r]) for p, r in zip(prompts[:10], responses[:10])])
    in_threes = np.vstack([encoder.embed(prompts[i : i + 3], responses[i : i + 3]) for i in range(0, 10, 3)])
    np.testing.assert_array_equal(together[:10], alone)  # whatever else was in the batch, the same bits
    np.testing.assert_array_equal(together[:10], in_threes[:10])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0)


def test_cached_encoder_keys_the_exact_pair():
    from training.embed import CachedEncoder

    class Counting:  # the encoder's interface: what was asked of it, and a vector per pair that tells pairs apart
        max_length, width = 64, 2

        def __init__(self):
            self.asked = []

        def sha256(self):
            return "0" * 64

        def embed(self, prompts, responses):
            self.asked.append(list(zip(prompts, responses)))
            return np.array([[len(p), len(r)] for p, r in zip(prompts, responses)], dtype=np.float64)

    inner = Counting()
    cached = CachedEncoder(inner)
    first = cached.embed(["a", "ab", "a"], ["x", "x", "x"])
    assert inner.asked == [[("a", "x"), ("ab", "x")]]  # a repeated pair is embedded once
    again = cached.embed(["ab", "a", "a"], ["x", "x", "xy"])
    assert inner.asked[1:] == [[("a", "xy")]]  # only the new pair: ("a", "xy") is not ("a", "x")
    assert first.tolist() == [[1, 1], [2, 1], [1, 1]] and again.tolist() == [[2, 1], [1, 1], [1, 2]]
    assert cached.computed == 3 and cached.embed([], []).shape == (0, 2)


# -- the embed judge as the first stage of a cascade ---------------------------------------------


def test_embed_judge_is_a_cascade_first_stage(halves, tmp_path, capsys):
    """judge.calibrate on the embed judge's out-of-fold predictions, judge.label --selective writes escalate rows,
    and a later judge with --only-escalated labels exactly those. The bundled MiniLM: a random tiny encoder is
    too unsure of everything for any output to be kept."""
    import contextlib
    import io

    from judge.analysis.selective import cascade_labels, read_calibration

    judge_dir = tmp_path / "embed"
    argv = ["--train", str(halves / "train.jsonl"), "--label-column", "label", "--taxonomy", "chehbouni2024",
            "--kind", "embed", "--cv", "3", "--device", "cpu", "--no-progress", "--out", str(judge_dir)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert module_run(train_cmd, argv) == 0, err.getvalue()
        cal = ["--judge", str(judge_dir), "--target", "0.9", "--delta", "0.2", "--out", str(tmp_path / "cal.json")]
        assert module_run(calibrate_cmd, cal) == 0, err.getvalue()
    calibration = read_calibration(str(tmp_path / "cal.json"))
    assert calibration.n == 150 and 0 < calibration.kept < 150

    first = tmp_path / "first.jsonl"
    code, _, err = run_cli(label_cmd, ["--judge", str(judge_dir), "--selective", str(tmp_path / "cal.json"), "--input",
                                       str(halves / "rest.jsonl"), "--device", "cpu", "--prefix", "a_", "--no-progress",
                                       "--out", str(first)], capsys)
    assert code == 0, err
    one = pd.read_json(first, lines=True)
    escalated = one["a_label"] == ESCALATE
    assert escalated.any() and (~escalated).any()
    assert (one.loc[escalated, "a_confidence"] < calibration.threshold).all()
    assert (one.loc[~escalated, "a_confidence"] >= calibration.threshold).all()

    second = tmp_path / "second.jsonl"
    code, _, err = run_cli(label_cmd, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(first),
                                       "--only-escalated", "a_", "--prefix", "b_", "--no-progress", "--out", str(second)],
                           capsys)
    assert code == 0, err
    two = pd.read_json(second, lines=True)
    assert two["id"].tolist() == one.loc[escalated, "id"].tolist() and two["b_label"].notna().all()
    merged = one.merge(two[["id", "b_label"]], on="id", how="left")
    final = cascade_labels(merged, prefixes=["a_", "b_"])
    assert (final[~escalated] == one.loc[~escalated, "a_label"]).all()
    assert (final[escalated].to_numpy() == merged.loc[escalated, "b_label"].to_numpy()).all()


def test_ensemble_passes_judge_train_options_to_its_members(halves, tmp_path, capsys):
    # the ensemble's own run once dropped judge.train's options: its TF-IDF member counted words whatever
    # --tfidf-analyzer said (the embed member's --device and encoder reach it the same way)
    code, _, err = run_cli(train_cmd, ["--train", str(halves / "train.jsonl"), "--label-column", "label", "--taxonomy",
                                       "chehbouni2024", "--kind", "ensemble", "--members", "tfidf", "rules", "--cv", "3",
                                       "--tfidf-analyzer", "char_wb", "--no-progress", "--out", str(tmp_path / "ens")],
                           capsys)
    assert code == 0, err
    stored = json.loads((tmp_path / "ens" / "members" / "tfidf" / "tfidf.json").read_text())
    assert stored["analyzer"] == "char_wb" and "TF-IDF character (char_wb) 2-4 grams" in (tmp_path / "ens" / "README.md").read_text()
