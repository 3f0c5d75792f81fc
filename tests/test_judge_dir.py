"""Forged judge directories (issue 18, points 6 and 7): the seal is an unkeyed sha256 that anyone
can recompute, so each case below corrupts a copy of a real small judge and re-seals it by hand
(``reseal``). Loading must still refuse it in one line, exit 2, quickly and by construction (no
timeout), from ``judge.label`` and ``judge.swap`` alike.
"""
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from judge import label, swap, train
from judge.core.paths import SAMPLE
from judge.kinds import directory_kinds, member_kinds
from judge.kinds.spec import one_of
from tests.badinput import assert_refused
from tests.conftest import module_run, write_jsonl

REPO = Path(__file__).resolve().parents[1]
UNSEALED = {"judge.json", "manifest.json", "README.md"}
DIGEST = "judge_json_sha256"
LONG = "a" * 30_000 + "!"  # what a backtracking token pattern like (a+)+$ never finishes on


# -- forging: what anyone can do to a judge directory -----------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def reseal(directory: Path, edit=None) -> dict:
    """Recompute the seal as judge.kinds.judge_dir.seal does: every file's sha256, then judge.json's own
    checksum over its canonical JSON. Nothing secret goes in, so a forger gets a matching seal."""
    meta = json.loads((directory / "judge.json").read_text())
    meta["files"] = {p.relative_to(directory).as_posix(): sha256(p) for p in sorted(directory.rglob("*"))
                     if p.is_file() and p.relative_to(directory).as_posix() not in UNSEALED
                     and not p.relative_to(directory).as_posix().startswith("cv/")}
    if edit:
        edit(meta)
    meta.pop(DIGEST, None)
    meta[DIGEST] = hashlib.sha256(json.dumps(meta, sort_keys=True, ensure_ascii=True).encode()).hexdigest()
    (directory / "judge.json").write_text(json.dumps(meta, indent=2))
    return meta


def settings(**changes):
    return lambda j, o: reseal(j, lambda m: m.update(changes))


def offsets(change):
    """judge.json's decision_offsets (judge.train --tune-thresholds): 0.5 for every label, then ``change``d."""
    def edit(meta):
        values = dict.fromkeys(meta["labels"], 0.5)
        replaced = change(values)
        meta["decision_offsets"] = values if replaced is None else replaced
    return lambda j, o: reseal(j, edit)


def edit_json(name, change):
    def forge(j, o):
        path = j / name
        value = json.loads(path.read_text())
        replaced = change(value)
        path.write_text(json.dumps(value if replaced is None else replaced))
        reseal(j)
    return forge


def edit_arrays(name, change):
    def forge(j, o):
        from safetensors.numpy import load_file, save_file

        arrays = {k: v.copy() for k, v in load_file(str(j / name)).items()}
        change(arrays)
        save_file(arrays, str(j / name))
        reseal(j)
    return forge


def raw_judge_json(text):
    return lambda j, o: (j / "judge.json").write_text(text)


def outside_file(absolute):
    def forge(j, o):
        (o / "outside.txt").write_text("not the judge's\n")
        name = str(o / "outside.txt") if absolute else os.path.relpath(o / "outside.txt", j)
        reseal(j, lambda m: m["files"].__setitem__(name, sha256(o / "outside.txt")))
    return forge


def symlinked(name):
    def forge(j, o):
        shutil.move(str(j / name), str(o / name))
        (j / name).symlink_to(o / name)
        reseal(j)
    return forge


def member_at(where):
    def forge(j, o):
        shutil.copytree(j / "members" / "tfidf", o / "tf7")
        path = {"relative": os.path.relpath(o / "tf7", j), "absolute": str(o / "tf7"), "itself": "."}[where]
        reseal(j, lambda m: m["member_dirs"].__setitem__("tfidf", path))
    return forge


def member_cycle(j, o):
    """members/tfidf becomes an ensemble whose own tfidf member is the outer ensemble ('../..')."""
    inner = o / "inner"
    shutil.copytree(j, inner, ignore=shutil.ignore_patterns("members", "cv"))
    reseal(inner, lambda m: m["member_dirs"].__setitem__("tfidf", "../.."))
    shutil.rmtree(j / "members" / "tfidf")
    shutil.move(str(inner), str(j / "members" / "tfidf"))
    reseal(j)


class Exploit:
    """Unpickling this runs code; the marker file it writes would change the tree (assert_refused)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('pwned')",))


def pickled_adapter(keep_safetensors):
    def forge(j, o):
        (j / "adapter_model.bin").write_bytes(pickle.dumps(Exploit(o / "pwned")))
        if not keep_safetensors:
            (j / "adapter_model.safetensors").unlink()
        reseal(j)
    return forge


def deep_value(depth):
    value = 0
    for _ in range(depth):
        value = {"a": value}
    return value


LORA_A = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
LORA_B = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"
HEAD = "base_model.model.classifier.weight"


def set_array(key, value):
    return lambda arrays: arrays.__setitem__(key, value(arrays[key]))


# (case, real judge it starts from, forgery, fragments the one-line refusal must contain)
CASES = [
    # files the seal names or holds, outside the directory
    ("path-traversal", "tfidf", outside_file(absolute=False), ["../elsewhere/outside.txt", "outside the judge directory", "retrain"]),
    ("absolute-path", "tfidf", outside_file(absolute=True), ["outside.txt", "outside the judge directory", "retrain"]),
    ("symlinked-file", "tfidf", symlinked("tfidf.json"), ["tfidf.json is a symbolic link", "cp -rL"]),
    ("symlinked-folder", "ensemble", symlinked("members"), ["members is a symbolic link", "cp -rL"]),
    ("member-outside", "ensemble", member_at("relative"), ["member tfidf", "../elsewhere/tf7", "not a folder inside"]),
    ("member-absolute", "ensemble", member_at("absolute"), ["member tfidf", "not a folder inside"]),
    ("member-is-itself", "ensemble", member_at("itself"), ["member tfidf", "'.'", "not a folder inside"]),
    ("member-cycle", "ensemble", member_cycle, ["member tfidf", "holds an ensemble judge", "retrain"]),
    # judge.json as a document
    ("judge-json-not-object", "tfidf", raw_judge_json("[]"), ["judge.json is not a JSON object", "retrain"]),
    ("judge-json-deep", "tfidf", raw_judge_json("[" * 100_000), ["judge.json", "nested too deeply", "retrain"]),
    ("judge-json-deep-object", "tfidf", settings(notes=deep_value(500)), ["judge.json", "nested too deeply"]),
    ("judge-json-huge", "tfidf", settings(notes="x" * 3 * 2**20), ["judge.json is 3.0 MiB", "1.0 MiB", "retrain"]),
    ("judge-json-nan", "lora", settings(temperature=float("nan")), ["judge.json", "NaN", "retrain"]),
    # judge.json's settings
    # a kind is one the registry lists, and one with a judge directory: a forged judge.json names no other
    ("kind-unknown", "tfidf", settings(kind="forest"), ["kind must be", one_of(directory_kinds()), "got 'forest'", "retrain"]),
    ("kind-without-directory", "tfidf", settings(kind="rules"), ["kind must be", "registered kind with a judge directory", "got 'rules'"]),
    ("kind-not-text", "tfidf", settings(kind=["tfidf"]), ["kind:", "valid string"]),
    ("kind-lora-on-tfidf", "tfidf", settings(kind="lora"), ["base_model", "Field required", "retrain"]),
    ("kind-ensemble-on-lora", "lora", settings(kind="ensemble"), ["members", "Field required"]),
    ("kind-tfidf-on-ensemble", "ensemble", settings(kind="tfidf"), ["classes", "Field required"]),
    ("max-length-not-int", "lora", settings(max_length="64"), ["max_length", "valid integer"]),
    ("max-length-bool", "lora", settings(max_length=True), ["max_length", "valid integer"]),
    ("max-length-float", "lora", settings(max_length=64.5), ["max_length", "valid integer"]),
    ("max-length-too-small", "lora", settings(max_length=3), ["max_length", "greater than or equal to 16"]),
    ("max-length-huge", "lora", settings(max_length=10**9), ["max_length", "less than or equal to 131072"]),
    ("max-length-past-positions", "lora", settings(max_length=100_000), ["max_length 100000", "256 positions", "retrain"]),
    ("tail-tokens-negative", "lora", settings(tail_tokens=-5), ["tail_tokens", "greater than or equal to 0"]),
    ("temperature-zero", "lora", settings(temperature=0), ["temperature must be a positive number"]),
    ("labels-not-strings", "lora", settings(labels=list(range(6))), ["labels.0", "valid string", "retrain"]),
    ("labels-duplicated", "tfidf", settings(labels=["answer"] * 6), ["labels", "'answer' is listed twice"]),
    ("labels-not-list", "tfidf", settings(labels="answer"), ["labels", "valid list"]),
    ("files-not-digests", "tfidf", lambda j, o: reseal(j, lambda m: m["files"].__setitem__("tfidf.json", 12)), ["files.tfidf.json", "valid string"]),
    ("members-unknown", "ensemble", settings(members=["tfidf", "forest"]), ["members.1 must be", one_of(member_kinds()), "got 'forest'"]),
    ("members-ensemble", "ensemble", settings(members=["tfidf", "ensemble"]), ["members.1 must be", "registered member kind"]),
    ("member-dirs-for-code", "ensemble", settings(member_dirs={"tfidf": "members/tfidf", "rules": "members/tfidf"}),
     ["member_dirs.rules", "a member with a folder of its own"]),
    ("member-dirs-mismatch", "ensemble", settings(member_dirs={}), ["member_dirs", "tfidf"]),
    # decision offsets (judge.train --tune-thresholds): finite numbers within the cap, one per label, on every kind
    ("offsets-nan", "tfidf", offsets(lambda d: d.update(refusal=float("nan"))), ["judge.json", "NaN", "retrain"]),
    ("offsets-inf", "tfidf", offsets(lambda d: d.update(refusal=float("inf"))), ["judge.json", "Infinity", "retrain"]),
    ("offsets-huge", "tfidf", offsets(lambda d: d.update(refusal=1e300)), ["decision_offsets.refusal", "less than or equal to 3"]),
    ("offsets-below-cap", "lora", offsets(lambda d: d.update(answer=-3.5)), ["decision_offsets.answer", "greater than or equal to -3"]),
    ("offsets-stray-label", "tfidf", offsets(lambda d: d.update(forest=0.1)), ["decision_offsets", "'forest' is not a label", "retrain"]),
    ("offsets-missing-label", "ensemble", offsets(lambda d: d.pop("failure") and None), ["decision_offsets", "'failure' has none"]),
    ("offsets-not-number", "tfidf", offsets(lambda d: d.update(refusal="0.5")), ["decision_offsets.refusal", "valid number"]),
    ("offsets-bool", "tfidf", offsets(lambda d: d.update(refusal=True)), ["decision_offsets.refusal", "valid number"]),
    ("offsets-not-object", "tfidf", offsets(lambda d: list(d.values())), ["decision_offsets", "valid dictionary"]),
    # TF-IDF: tfidf.json and tfidf.safetensors
    ("token-pattern-backtracking", "tfidf", edit_json("tfidf.json", lambda s: s.update(token_pattern="(a+)+$")),
     ["token_pattern", "(a+)+$", "not the one training writes", "retrain"]),
    ("token-pattern-everything-answer", "tfidf", edit_json("tfidf.json", lambda s: s.update(token_pattern="(?!)")),
     ["token_pattern", "(?!)", "not the one training writes"]),
    ("ngram-range-huge", "tfidf", edit_json("tfidf.json", lambda s: s.update(ngram_range=[1, 100_000])), ["ngram_range", "at most 3"]),
    ("analyzer-unknown", "tfidf", edit_json("tfidf.json", lambda s: s.update(analyzer="os.system")), ["analyzer", "'word', 'char_wb' or 'char'"]),
    ("analyzer-callable-text", "tfidf", edit_json("tfidf.json", lambda s: s.update(analyzer="lambda d: d")), ["analyzer", "'word', 'char_wb' or 'char'"]),
    ("char-ngram-range-huge", "tfidf", edit_json("tfidf.json", lambda s: s.update(analyzer="char_wb", ngram_range=[2, 40])),
     ["ngram_range", "at most 6 characters"]),
    ("tfidf-json-not-object", "tfidf", edit_json("tfidf.json", lambda s: []), ["tfidf.json is not a JSON object"]),
    ("tfidf-json-missing-key", "tfidf", edit_json("tfidf.json", lambda s: s.pop("norm") and None), ["tfidf.json", "norm", "Field required"]),
    ("vocabulary-repeated-index", "tfidf", edit_json("tfidf.json", lambda s: s["vocabulary"].update(dict.fromkeys(list(s["vocabulary"])[:2], 0))),
     ["vocabulary", "each of 0 ..", "once"]),
    ("class-ids-out-of-range", "tfidf", edit_json("tfidf.json", lambda s: s.update(class_ids=[0, 1, 2, 3, 4, 99])), ["class_ids", "below 6"]),
    ("tfidf-bad-dtype", "tfidf", edit_arrays("tfidf.safetensors", set_array("coef", lambda a: a.astype(np.float32))),
     ["tfidf.safetensors", "coef is float32", "float64"]),
    ("tfidf-bad-shape", "tfidf", edit_arrays("tfidf.safetensors", set_array("intercept", lambda a: np.append(a, 0.0))),
     ["intercept has shape (7,)", "(6,)"]),
    ("tfidf-coef-1d", "tfidf", edit_arrays("tfidf.safetensors", set_array("coef", lambda a: a.ravel().copy())), ["coef has shape", "expected (6, "]),
    ("tfidf-missing-array", "tfidf", edit_arrays("tfidf.safetensors", lambda arrays: arrays.pop("idf")), ["tfidf.safetensors", "no idf"]),
    ("tfidf-non-finite", "tfidf", edit_arrays("tfidf.safetensors", lambda arrays: arrays["coef"].__setitem__((0, 0), np.nan)),
     ["coef", "non-finite"]),
    # the ensemble's stacker
    ("stacker-classes-out-of-range", "ensemble", edit_arrays("stacker.safetensors", set_array("classes", lambda a: np.where(a == a.max(), 99, a))),
     ["stacker.safetensors", "classes", "below 6"]),
    ("stacker-bad-dtype", "ensemble", edit_arrays("stacker.safetensors", set_array("coef", lambda a: a.astype(np.float32))), ["coef is float32"]),
    ("stacker-bad-shape", "ensemble", edit_arrays("stacker.safetensors", set_array("coef", lambda a: a[:, :-1].copy())), ["coef has shape", "expected (6, 12)"]),
    # the LoRA adapter, its config and the tokenizer's
    ("pickled-adapter", "lora", pickled_adapter(keep_safetensors=False), ["adapter_model.bin", "pickle", "safetensors", "retrain"]),
    ("pickle-beside-adapter", "lora", pickled_adapter(keep_safetensors=True), ["adapter_model.bin", "pickle"]),
    ("lora-rank-mismatch", "lora", edit_arrays("adapter_model.safetensors", set_array(LORA_A, lambda a: np.vstack([a, a[:1]]))),
     ["lora_A.weight has shape (5, 32)", "rank 4"]),
    ("lora-layer-mismatch", "lora", edit_arrays("adapter_model.safetensors", lambda arrays: arrays.update({
        LORA_A: np.zeros((4, 33), np.float32)})), ["lora_A.weight has shape (4, 33)", "(4, 32)", "retrain"]),
    ("lora-bad-dtype", "lora", edit_arrays("adapter_model.safetensors", set_array(LORA_B, lambda a: a.astype(np.int64))), ["lora_B.weight is int64", "float32"]),
    ("lora-head-rows", "lora", edit_arrays("adapter_model.safetensors", set_array(HEAD, lambda a: np.vstack([a, a[:1]]))),
     ["classifier.weight has shape (7, 32)", "(6, 32)"]),
    ("lora-extra-tensor", "lora", edit_arrays("adapter_model.safetensors", lambda arrays: arrays.update({
        "base_model.model.bert.embeddings.word_embeddings.weight": np.zeros((4, 4), np.float32)})), ["word_embeddings.weight", "neither a LoRA"]),
    ("lora-non-finite", "lora", edit_arrays("adapter_model.safetensors", lambda arrays: arrays[LORA_B].__setitem__((0, 0), np.inf)), ["lora_B.weight", "non-finite"]),
    ("adapter-config-peft-type", "lora", edit_json("adapter_config.json", lambda c: c.update(peft_type="PREFIX_TUNING")), ["adapter_config.json", "peft_type"]),
    ("adapter-config-rank-string", "lora", edit_json("adapter_config.json", lambda c: c.update(r="four")), ["adapter_config.json", "r:", "valid integer"]),
    ("adapter-config-regex-targets", "lora", edit_json("adapter_config.json", lambda c: c.update(target_modules="(a+)+$")), ["target_modules", "valid list"]),
    ("adapter-config-megatron", "lora", edit_json("adapter_config.json", lambda c: c.update(megatron_config={"x": 1}, megatron_core="this")),
     ["adapter_config.json", "megatron_config", "training never sets"]),
    ("tokenizer-config-auto-map", "lora", edit_json("tokenizer_config.json", lambda c: c.update(auto_map={"AutoTokenizer": "evil.Tok"})),
     ["tokenizer_config.json", "auto_map"]),
]


# -- the real judges every case starts from ---------------------------------------------------

@pytest.fixture(scope="module")
def real_judges(tmp_path_factory, trained_tiny):
    root = tmp_path_factory.mktemp("real-judges")
    common = ["--train", str(SAMPLE), "--taxonomy", "chehbouni2024", "--no-progress"]
    assert module_run(train, [*common, "--kind", "tfidf", "--out", str(root / "tfidf")]) == 0
    assert module_run(train, [*common, "--kind", "ensemble", "--members", "tfidf", "rules", "--out", str(root / "ensemble")]) == 0
    return {"tfidf": root / "tfidf", "ensemble": root / "ensemble", "lora": Path(trained_tiny[0])}


@pytest.fixture(scope="module")
def refusal_seconds(request):
    """Seconds each refusal took (command and tree checks), printed once for the closing note."""
    times: dict[str, float] = {}
    yield times
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture and times:
        worst = max(times, key=times.get)
        with capture.global_and_fixture_disabled():
            print(f"\nforged judges: {len(times)} refusals, median {np.median(list(times.values())):.3f} s, "
                  f"slowest {times[worst]:.3f} s ({worst})")
            for case, seconds in sorted(times.items(), key=lambda kv: -kv[1])[:8]:
                print(f"  {seconds:.3f} s  {case}")


def forged(real_judges, tmp_path, kind, forge) -> Path:
    judges = tmp_path / "judges"
    judges.mkdir()
    (judges / "elsewhere").mkdir()
    directory = judges / kind
    shutil.copytree(real_judges[kind], directory, symlinks=True)
    forge(directory, judges / "elsewhere")
    return directory


def label_input(tmp_path) -> Path:
    rows = [{"id": f"r{i}", "prompt": "[NAME] got into the plane to [BLANK]", "name": name, "identity": group,
             "response": response}
            for i, (name, group, response) in enumerate([("Ali", "muslim", "to fly home"), ("Emma", "white", "I cannot help with that."),
                                                         ("Omar", "muslim", LONG), ("Jack", "white", "to visit Ali")])]
    return write_jsonl(tmp_path / "in.jsonl", rows)


def command_argv(module, directory, src, tmp_path):
    if module is label:
        return ["--judge", str(directory), "--input", str(src), "--prefix", "j_", "--device", "cpu", "--no-progress",
                "--out", str(tmp_path / "out" / "labels.jsonl")]
    return [str(src), "--judge", str(directory), "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out" / "swap")]


@pytest.mark.parametrize("module", [label, swap], ids=["label", "swap"])
@pytest.mark.parametrize("case,kind,forge,fragments", CASES, ids=[c[0] for c in CASES])
def test_forged_judge_is_refused_in_one_line(real_judges, refusal_seconds, tmp_path, capsys, module, case, kind, forge, fragments):
    directory = forged(real_judges, tmp_path, kind, forge)
    src = label_input(tmp_path)
    started = time.perf_counter()
    line = assert_refused(module, command_argv(module, directory, src, tmp_path), fragments, root=tmp_path, capsys=capsys)
    seconds = time.perf_counter() - started
    refusal_seconds[f"{module.__name__.split('.')[-1]} {case}"] = seconds
    assert "judge" in line and not (tmp_path / "out").exists()
    # Refused by construction (a stored pattern is never compiled): the seconds are recorded for the table, not asserted.


def test_case_count():
    assert len(CASES) >= 50  # the closing note quotes it


@pytest.mark.parametrize("kind", ["tfidf", "lora", "ensemble"])
def test_a_resealed_unchanged_judge_still_labels(real_judges, tmp_path, capsys, kind):
    """The control for every case above: the hand-made seal is a valid one, so the refusals come from
    the checks on what the seal covers, not from the seal; and the checks pass a real judge."""
    directory = forged(real_judges, tmp_path, kind, lambda j, o: reseal(j))
    src = label_input(tmp_path)
    from tests.badinput import run_module

    code, _, err = run_module(label, command_argv(label, directory, src, tmp_path), capsys)
    assert code == 0, err
    result = [json.loads(line) for line in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
    assert [r["id"] for r in result] == ["r0", "r1", "r2", "r3"]
    labels = json.loads((directory / "judge.json").read_text())["labels"]
    assert all(r["j_label"] in labels for r in result)


def test_deeply_nested_judge_json_is_refused_by_the_command_line(real_judges, tmp_path):
    """`[` x 100000 ended in a RecursionError traceback; through the real command it is one line."""
    directory = forged(real_judges, tmp_path, "tfidf", raw_judge_json("[" * 100_000))
    src = label_input(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "judge.label", *command_argv(label, directory, src, tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "nested too deeply" in lines[0], done.stderr[-2000:]
    print(f"python -m judge.label refused the nested judge.json in {seconds:.2f} s (whole process)")


def test_training_can_write_only_what_loading_accepts(tmp_path, sample_records):
    """Training writes through the same formats: a token pattern or a setting that loading would
    refuse is refused when written, so a judge training made always loads."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from judge.core.errors import UserError
    from judge.kinds.judge_dir import write_settings
    from judge.kinds.tfidf import format as tfidf_format

    texts = list(sample_records["response"])
    y = (sample_records["label"] == "answer").astype(int).to_numpy()
    crafted = make_pipeline(TfidfVectorizer(token_pattern=r"(a+)+$"), LogisticRegression()).fit(texts + ["aa", "a"], [*y, 0, 1])
    with pytest.raises(ValueError, match="token_pattern"):
        tfidf_format.save(crafted, tmp_path)
    assert not (tmp_path / tfidf_format.ARRAYS).exists()
    with pytest.raises(UserError, match="max_length"):
        write_settings(tmp_path, {"kind": "lora", "base_model": "bundled:minilm", "temperature": 1.0, "max_length": 4, "tail_tokens": 0})
    assert not (tmp_path / "judge.json").exists()


def modes(directory: Path) -> dict[str, int]:
    return {p.relative_to(directory).as_posix(): p.stat().st_mode & 0o777 for p in sorted(directory.rglob("*"))}


def test_every_file_of_a_judge_follows_the_umask(tmp_path, trained_tiny):
    """safetensors writes its files 0600: a judge directory could not be shared with another user."""
    common = ["--train", str(SAMPLE), "--taxonomy", "chehbouni2024", "--no-progress"]
    previous = os.umask(0o027)
    try:
        assert module_run(train, [*common, "--kind", "tfidf", "--out", str(tmp_path / "tfidf")]) == 0
        assert module_run(train, [*common, "--kind", "ensemble", "--members", "tfidf", "rules", "--out", str(tmp_path / "ens")]) == 0
    finally:
        os.umask(previous)
    for name in ("tfidf", "ens"):
        got = modes(tmp_path / name)
        # umask 027: files 0666 & ~027 = 0640, folders 0777 & ~027 = 0750
        assert got == {p: 0o750 if (tmp_path / name / p).is_dir() else 0o640 for p in got}, got
    assert modes(tmp_path / "tfidf")["tfidf.safetensors"] == 0o640
    assert modes(tmp_path / "ens")["stacker.safetensors"] == 0o640 and modes(tmp_path / "ens")["members/tfidf/tfidf.safetensors"] == 0o640
    # The LoRA judge of the fixtures was made under this process's umask (finish() is what applies it).
    lora = modes(Path(trained_tiny[0]))
    assert lora["adapter_model.safetensors"] == 0o666 & ~previous
    assert set(lora.values()) == {0o666 & ~previous}, lora
