"""The annotation round trip: export -> annotators -> import -> adjudicate -> resolve, on files, and
against a real Label Studio server (started here on 127.0.0.1 from its own virtual environment)."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from judge import agree
from judge import annotate as annotate_cmd
from judge.core.paths import ROOT, SAMPLE
from judge.core.records import read_records
from tests.conftest import run_cli


def export(tmp_path, capsys, *extra, budget="30"):
    out = tmp_path / "round"
    code, stdout, err = run_cli(annotate_cmd, ["export", str(SAMPLE), "--budget", budget, "--taxonomy", "chehbouni2024", "--out", str(out), *extra], capsys)
    assert code == 0, err
    return out


def fill(sheet: Path, labels: dict[str, str]) -> None:
    frame = pd.read_csv(sheet, keep_default_na=False)
    frame["label"] = frame["id"].map(labels)
    frame.to_csv(sheet, index=False)


def test_export_import_round_trip_keeps_every_id_once_and_every_field(tmp_path, capsys):
    out = export(tmp_path, capsys, "--strategy", "stratified", "--by", "identity", "--annotators", "alice", "bob")
    items = pd.read_csv(out / "items.csv", keep_default_na=False)
    sample = read_records(SAMPLE)
    truth = sample.set_index("id")["label"]
    fill(out / "alice.csv", {i: truth[i] for i in items["id"]})
    fill(out / "bob.csv", {i: truth[i] for i in items["id"]})
    code, stdout, err = run_cli(annotate_cmd, ["import", str(out), str(out / "alice.csv"), str(out / "bob.csv"), "--taxonomy", "chehbouni2024",
                                               "--out", str(tmp_path / "labels.csv")], capsys)
    assert code == 0, err
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert sorted(labels["id"]) == sorted(items["id"]) and labels["id"].is_unique
    kept = [c for c in sample.columns if c != "label"]
    assert set(kept) <= set(labels.columns)  # every field of the exported records comes back
    merged = labels.set_index("id")
    for col in ("prompt", "response", "identity"):
        assert merged[col].to_dict() == sample.set_index("id").loc[merged.index, col].astype(str).to_dict()
    assert (merged["label_alice"] == merged.index.map(truth)).all() and "label_bob" in merged
    # Spreadsheets are shuffled per annotator, with the same items.
    alice, bob = pd.read_csv(out / "alice.csv"), pd.read_csv(out / "bob.csv")
    assert set(alice["id"]) == set(bob["id"]) and list(alice["id"]) != list(bob["id"])


def test_blind_export_hides_names_and_group(tmp_path, capsys):
    out = export(tmp_path, capsys, "--blind", "--show", "identity", "template")
    tasks = json.loads((out / "tasks.json").read_text())
    sample = read_records(SAMPLE).set_index("id")
    for task in tasks:
        data = task["data"]
        assert "identity" not in data and "name" not in data  # hidden even though --show asked for identity
        assert "template" in data
        name = sample.loc[data["item_id"], "name"]
        assert name not in data["prompt"] and name not in data["response"] and "[NAME]" in data["prompt"]
    sheet = pd.read_csv(out / "annotator1.csv")
    assert "identity" not in sheet.columns and "name" not in sheet.columns
    assert "predictions" not in tasks[0]  # no judge label unless asked for
    assert "identity" not in (out / "label_config.xml").read_text()


def test_stratified_inclusion_probabilities_sum_to_the_sample_size(tmp_path, capsys):
    out = export(tmp_path, capsys, "--strategy", "stratified", "--by", "identity", budget="40")
    items = pd.read_csv(out / "items.csv")
    sample = read_records(SAMPLE)
    sizes = sample.groupby("identity").size()
    # Summed over the whole population, the inclusion probabilities give the expected sample size:
    # each stratum contributes N_s * (n_s / N_s) = n_s.
    per_stratum = items.groupby("identity")["inclusion_probability"].first()
    assert (per_stratum * sizes.loc[per_stratum.index]).sum() == pytest.approx(len(items))
    assert (1 / items["inclusion_probability"]).sum() == pytest.approx(len(sample))  # Horvitz-Thompson


def test_uncertain_and_exclude(tmp_path, capsys):
    sample = read_records(SAMPLE)
    rng = np.random.default_rng(0)
    sample["judge_confidence"] = rng.random(len(sample))
    src = tmp_path / "scored.jsonl"
    sample.to_json(src, orient="records", lines=True)
    excluded = sample.nsmallest(3, "judge_confidence")[["id"]]
    excluded.to_csv(tmp_path / "done.csv", index=False)
    code, _, err = run_cli(annotate_cmd, ["export", str(src), "--strategy", "uncertain", "--confidence-column", "judge_confidence", "--budget", "30",
                                          "--exclude", str(tmp_path / "done.csv"), "--out", str(tmp_path / "u"), "--taxonomy", "chehbouni2024"], capsys)
    assert code == 0, err
    items = pd.read_csv(tmp_path / "u" / "items.csv").set_index("id")
    assert not set(items.index) & set(excluded["id"])
    # A Poisson sample (issue 18), not the lowest confidences: each id's recorded probability is the
    # design's, falling with the judge's confidence and never 0.
    from judge.annotation.human_labels import UNIFORM_SHARE, poisson_probabilities

    pool = sample[~sample.id.isin(excluded.id)]
    pi = pd.Series(poisson_probabilities(1 - pool["judge_confidence"].to_numpy(), 30, UNIFORM_SHARE), index=pool["id"])
    assert items["inclusion_probability"].to_numpy() == pytest.approx(pi[items.index].to_numpy())
    assert pi.min() > 0 and pi.sum() == pytest.approx(30)
    assert np.corrcoef(pi, pool["judge_confidence"])[0, 1] < -0.99


def test_adjudication_merge_hand_built(tmp_path, capsys):
    rows = [
        {"id": "a", "prompt": "p", "response": "r", "label_x": "answer", "label_y": "answer"},         # agree
        {"id": "b", "prompt": "p", "response": "r", "label_x": "refusal", "label_y": "harmful refusal"},  # disagree
        {"id": "c", "prompt": "p", "response": "r", "label_x": "failure", "label_y": ""},              # one label only
        {"id": "d", "prompt": "p", "response": "r", "label_x": "answer", "label_y": "refusal"},         # disagree
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    code, stdout, err = run_cli(annotate_cmd, ["adjudicate", str(tmp_path / "labels.csv"), "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "adj")], capsys)
    assert code == 0, err
    sheet = pd.read_csv(tmp_path / "adj" / "adjudicator.csv", keep_default_na=False)
    assert list(sheet["id"]) == ["b", "d"] and {"label_x", "label_y"} <= set(sheet.columns)
    sheet["label"] = ["refusal", "answer"]
    sheet.to_csv(tmp_path / "adj" / "adjudicator.csv", index=False)
    code, stdout, err = run_cli(annotate_cmd, ["resolve", str(tmp_path / "labels.csv"), str(tmp_path / "adj" / "adjudicator.csv"),
                                               "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "final.csv")], capsys)
    assert code == 0, err
    final = pd.read_csv(tmp_path / "final.csv", keep_default_na=False).set_index("id")
    assert final["label"].to_dict() == {"a": "answer", "b": "refusal", "c": "failure", "d": "answer"}
    assert final["adjudicated"].tolist() == [False, True, False, True]


def _bad_import(tmp_path, capsys, labels_alice, labels_bob=None, extra_file=None):
    out = export(tmp_path, capsys, "--annotators", "alice", "bob", budget="5")
    ids = list(pd.read_csv(out / "items.csv")["id"])
    fill(out / "alice.csv", dict(zip(ids, labels_alice)))
    files = [str(out / "alice.csv")]
    if labels_bob is not None:
        fill(out / "bob.csv", dict(zip(ids, labels_bob)))
        files.append(str(out / "bob.csv"))
    if extra_file is not None:
        files.append(str(extra_file(out, ids)))
    code, _, err = run_cli(annotate_cmd, ["import", str(out), *files, "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "labels.csv")], capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "labels.csv").exists()
    return lines[0]


def test_import_refuses_a_label_outside_the_taxonomy(tmp_path, capsys):
    message = _bad_import(tmp_path, capsys, ["answer", "maybe", "answer", "answer", "answer"])
    sheet = pd.read_csv(tmp_path / "round" / "alice.csv", keep_default_na=False)
    row = int(sheet.index[sheet["label"] == "maybe"][0]) + 2  # header is row 1
    assert "'maybe'" in message and "valid labels" in message and f"alice.csv row {row}:" in message


def test_import_refuses_two_labels_from_one_annotator(tmp_path, capsys):
    def duplicate(out, ids):
        path = out / "copy" / "alice.csv"
        path.parent.mkdir()
        shutil.copy(out / "alice.csv", path)
        return path
    message = _bad_import(tmp_path, capsys, ["answer"] * 5, extra_file=duplicate)
    assert "labelled id" in message and "twice" in message


def test_import_refuses_an_id_that_was_never_exported(tmp_path, capsys):
    def stranger(out, ids):
        path = out / "carol.csv"
        pd.DataFrame({"id": ["not-exported"], "label": ["answer"]}).to_csv(path, index=False)
        return path
    message = _bad_import(tmp_path, capsys, ["answer"] * 5, extra_file=stranger)
    assert "'not-exported'" in message and "never exported" in message


def test_label_issues_find_planted_errors(tmp_path, capsys):
    sample = read_records(SAMPLE)
    refusals = sample.index[sample["label"] == "refusal"][:12]
    sample.loc[refusals, "label"] = "answer"  # twelve clear refusals now labelled as answers
    src = tmp_path / "planted.jsonl"
    sample.to_json(src, orient="records", lines=True)
    code, stdout, err = run_cli(annotate_cmd, ["issues", str(src), "--taxonomy", "chehbouni2024", "--folds", "3", "--out", str(tmp_path / "iss")], capsys)
    assert code == 0, err
    flagged = pd.read_csv(tmp_path / "iss" / "label_issues.csv", keep_default_na=False)
    assert {"id", "given_label", "suggested_label", "p_given", "fold", "label"} <= set(flagged.columns)
    found = set(flagged["id"]) & set(sample.loc[refusals, "id"])
    assert len(found) >= 8, f"only {len(found)} of 12 planted errors flagged"
    assert (flagged.set_index("id").loc[sorted(found), "suggested_label"] != "answer").all()
    assert "look wrong" in stdout
    tasks = json.loads((tmp_path / "iss" / "tasks.json").read_text())
    assert [t["data"]["item_id"] for t in tasks] == list(flagged["id"]) and "judge suggests" in tasks[0]["data"]["annotator_labels"]


def test_out_of_fold_probabilities_never_come_from_a_model_that_saw_the_row():
    from training.label_errors import stratified_folds

    y = np.array([i % 3 for i in range(60)])
    groups = np.array([i % 6 for i in range(60)])
    fold_of = stratified_folds(y, folds=3, groups=groups, seed=0)
    assert (fold_of >= 0).all()
    for g in set(groups):  # a group never straddles folds: its rows are all predicted by one held-out model
        assert len(set(fold_of[groups == g])) == 1


# -- a real Label Studio -----------------------------------------------------------------------

LS_BIN = Path(os.environ.get("LABEL_STUDIO_BIN", ROOT / ".venv-label-studio" / "bin" / "label-studio"))
TOKEN = "safeguard-audit-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url, path, *, method="GET", body=None):
    request = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if not LS_BIN.exists():
        pytest.skip(f"Label Studio is not installed at {LS_BIN} (make label-studio installs it; .ci/run does)")
    pytest.importorskip("label_studio_sdk", reason="the [annotate] extra (label-studio-sdk) is not installed")
    data_dir = tmp_path_factory.mktemp("label-studio-data")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(data_dir / "server.log", "w")
    env = {**os.environ, "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    server = subprocess.Popen([str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
                               "--username", "admin@example.com", "--password", "admin-password-1", "--user-token", TOKEN, "--enable-legacy-api-token"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    started = time.time()
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() - started > 300:
                log.flush()
                tail = " | ".join((data_dir / "server.log").read_text(errors="replace").strip().splitlines()[-3:])
                pytest.fail(f"Label Studio did not start (see {data_dir / 'server.log'}): {tail[-500:]}")
            time.sleep(2)
        print(f"Label Studio up at {url} after {time.time() - started:.0f}s")
        yield url
    finally:
        import signal

        # The server was started in its own session: stop its whole process group, children included
        # (gone already when the start failed).
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_round_trip_with_a_running_label_studio(label_studio, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    out = export(tmp_path, capsys, "--blind", budget="20")
    code, stdout, err = run_cli(annotate_cmd, ["push", str(out), "--url", label_studio, "--title", "integration"], capsys)
    assert code == 0, err
    project = int(stdout.split("created project ")[1].split()[0])
    tasks = _api(label_studio, f"/api/tasks/?project={project}&fields=all&page_size=100")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    assert len(tasks) == 20
    bob = _api(label_studio, "/api/users/", method="POST", body={"email": "bob@example.com", "username": "bob@example.com"})
    truth = read_records(SAMPLE).set_index("id")["label"]
    flip = {"answer": "partial answer", "refusal": "harmful refusal", "harmful refusal": "refusal", "partial answer": "answer", "failure": "answer", "harmful answer": "answer"}
    disagreements = set()
    for k, task in enumerate(sorted(tasks, key=lambda t: t["data"]["item_id"])):
        item = task["data"]["item_id"]
        gold = truth[item]
        bobs = flip[gold] if k % 7 == 0 else gold  # bob disagrees on 3 of 20
        if bobs != gold:
            disagreements.add(item)
        for user, label in ((1, gold), (bob["id"], bobs)):
            _api(label_studio, f"/api/tasks/{task['id']}/annotations/", method="POST",
                 body={"completed_by": user, "result": [{"from_name": "label", "to_name": "response", "type": "choices", "value": {"choices": [label]}}]})
    # A cancelled (skipped) annotation is not a label.
    _api(label_studio, f"/api/tasks/{tasks[0]['id']}/annotations/", method="POST", body={"completed_by": 1, "was_cancelled": True, "result": []})
    labels = tmp_path / "labels.csv"
    code, stdout, err = run_cli(annotate_cmd, ["pull", str(out), "--url", label_studio, "--project", str(project), "--taxonomy", "chehbouni2024",
                                               "--out", str(labels)], capsys)
    assert code == 0, err
    pulled = pd.read_csv(labels, keep_default_na=False).set_index("id")
    assert {"label_admin", "label_bob"} <= set(pulled.columns) and len(pulled) == 20
    assert (pulled["label_admin"] == pulled.index.map(truth)).all()
    assert set(pulled.index[pulled["label_admin"] != pulled["label_bob"]]) == disagreements and len(disagreements) == 3
    # Inter-annotator agreement before adjudication: equals scikit-learn on the same labels.
    from sklearn.metrics import cohen_kappa_score

    pulled.assign(gold=pulled["label_admin"]).reset_index().to_csv(tmp_path / "ag_in.csv", index=False)
    code, _, err = run_cli(agree, [str(tmp_path / "ag_in.csv"), "--gold", "gold", "--pred", "label_bob", "--annotators", "label_admin", "label_bob",
                                   "--taxonomy", "chehbouni2024", "--bootstrap", "0", "--out", str(tmp_path / "agree")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "agree" / "agreement.json").read_text())
    assert result["cohen_kappa"] == pytest.approx(cohen_kappa_score(pulled["label_admin"], pulled["label_bob"]))
    # Adjudicate the three, resolve: the final label is the adjudicator's there, the agreed one elsewhere.
    code, stdout, err = run_cli(annotate_cmd, ["adjudicate", str(labels), "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "adj")], capsys)
    assert code == 0 and "3 of 20" in stdout, err
    sheet = pd.read_csv(tmp_path / "adj" / "adjudicator.csv", keep_default_na=False)
    sheet["label"] = sheet["id"].map(truth)
    sheet.to_csv(tmp_path / "adj" / "adjudicator.csv", index=False)
    code, _, err = run_cli(annotate_cmd, ["resolve", str(labels), str(tmp_path / "adj" / "adjudicator.csv"), "--taxonomy", "chehbouni2024",
                                          "--out", str(tmp_path / "final.csv")], capsys)
    assert code == 0, err
    final = pd.read_csv(tmp_path / "final.csv", keep_default_na=False).set_index("id")
    assert (final["label"] == final.index.map(truth)).all()


def test_label_issues_with_several_annotators(tmp_path, capsys):
    sample = read_records(SAMPLE)
    rng = np.random.default_rng(1)
    cats = sorted(sample["label"].unique())
    sample["ann_a"] = sample["label"]
    sample["ann_b"] = [l if rng.random() < 0.9 else rng.choice(cats) for l in sample["label"]]
    sample["ann_c"] = sample["label"]
    planted = sample.index[:6]
    sample.loc[planted, "ann_c"] = [next(c for c in cats if c != l) for l in sample.loc[planted, "label"]]  # c errs on six items
    src = tmp_path / "multi.jsonl"
    sample.to_json(src, orient="records", lines=True)
    code, stdout, err = run_cli(annotate_cmd, ["issues", str(src), "--annotators", "ann_a", "ann_b", "ann_c", "--taxonomy", "chehbouni2024",
                                               "--folds", "3", "--out", str(tmp_path / "iss")], capsys)
    assert code == 0, err
    flagged = pd.read_csv(tmp_path / "iss" / "label_issues.csv", keep_default_na=False)
    planted_ids = set(sample.loc[planted, "id"])
    from_c = flagged[flagged["annotator"] == "ann_c"]
    assert planted_ids <= set(from_c["id"])  # every planted error is flagged, against the consensus of the others
    assert (flagged["given_label"] != flagged["suggested_label"]).all()


def test_token_never_reaches_a_written_file(label_studio, tmp_path, capsys, monkeypatch):
    """The secret test (issue 21): push and pull given the token on the command line, as a user types it;
    no file the runs wrote holds it (manifests, saved command lines, the raw export, the records)."""
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    out = export(tmp_path, capsys, budget="4")
    push = ["push", str(out), "--url", label_studio, "--token", TOKEN, "--title", "secret-test"]
    monkeypatch.setattr("sys.argv", ["python -m judge.annotate", *push])
    code, stdout, err = run_cli(annotate_cmd, push, capsys)
    assert code == 0, err
    project = stdout.split("created project ")[1].split()[0]
    tasks = _api(label_studio, f"/api/tasks/?project={project}&fields=all&page_size=100")
    for task in tasks["tasks"] if isinstance(tasks, dict) else tasks:
        _api(label_studio, f"/api/tasks/{task['id']}/annotations/", method="POST",
             body={"completed_by": 1, "result": [{"from_name": "label", "to_name": "response", "type": "choices", "value": {"choices": ["answer"]}}]})
    labels = tmp_path / "pulled.csv"
    pull = ["pull", str(out), "--url", label_studio, f"--token={TOKEN}", "--project", project, "--taxonomy", "chehbouni2024", "--out", str(labels)]
    monkeypatch.setattr("sys.argv", ["python -m judge.annotate", *pull])
    code, stdout, err = run_cli(annotate_cmd, pull, capsys)
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert labels.with_name(labels.name + ".manifest.json") in written
    assert "***" in labels.with_name(labels.name + ".manifest.json").read_text()
    assert [p.name for p in written if TOKEN.encode() in p.read_bytes()] == []
    assert TOKEN not in stdout + err
