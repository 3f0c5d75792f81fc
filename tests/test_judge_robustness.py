"""Issue 34: judges that do not fail silently. Multi-turn prompts (a list of chat messages) through the
default judge, a degenerate judge warned of at training, a dotted label path, a character n-gram TF-IDF
judge on text without spaces, --cv choosing the text view, and the frozen-encoder kind (embed)."""

import json

import numpy as np
import pandas as pd

from judge import label, train
from judge.core.text import encode_pairs, render_prompt
from tests.conftest import run_cli, write_jsonl

LONG_TURN = "Tell me more about the history of the old harbour town and its many bridges, markets and festivals. " * 3


def chat_rows(n: int = 24) -> list[dict]:
    """Records whose prompt is a conversation (a list of messages) far longer than a 96-token window."""
    rows = []
    for i in range(n):
        refused = i % 2 == 0
        rows.append(
            {
                "id": f"c{i}",
                "prompt": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": LONG_TURN},
                    {"role": "assistant", "content": "The town has a long history."},
                    {"role": "user", "content": LONG_TURN},
                    {"role": "assistant", "content": "Here is a short overview of the town."},
                    {"role": "user", "content": f"And question {i}: can you go on?"},
                ],
                "response": "I am sorry, I cannot continue with that."
                if refused
                else "Sure, the harbour was built in 1602 and grew fast.",
                "label": "refusal" if refused else "no refusal",
            }
        )
    return rows


# -- 1. multi-turn prompts ----------------------------------------------------------------------


def test_a_message_list_is_rendered_as_a_conversation():
    text = json.dumps(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}]
    )
    assert render_prompt(text) == "user: Hi\nassistant: Hello"
    assert render_prompt("[not json") == "[not json"
    assert render_prompt("[1, 2]") == "[1, 2]"  # a list of something else stays the text it is
    from judge.kinds.tfidf.format import tfidf_text

    assert tfidf_text([text], ["ok"]) == ["user: Hi\nassistant: Hello ||| ok"]


def test_a_conversation_takes_the_tokenizers_chat_template_where_it_has_one(tiny_llama, tiny_bert):
    from transformers import AutoTokenizer

    text = json.dumps([{"role": "user", "content": "Hi there"}])
    llama = AutoTokenizer.from_pretrained(tiny_llama)  # SmolLM2's tokenizer, with its chat template
    rendered = render_prompt(text, llama)
    assert "<|im_start|>user\nHi there<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")
    encoded = encode_pairs(llama, [text], ["Sure."], max_length=96)
    assert llama.decode(encoded["input_ids"][0]).count("<|im_start|>") >= 2
    bert = AutoTokenizer.from_pretrained(tiny_bert)  # no chat template: the plain rendering
    assert render_prompt(text, bert) == "user: Hi there"


def test_a_long_prompt_leaves_the_response_its_half_of_the_window(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    prompt, response = LONG_TURN * 2, "I am sorry but I cannot help. " * 20
    encoded = encode_pairs(tokenizer, [prompt, "short"], [response, "fine"], max_length=96)
    ids = encoded["input_ids"][0]
    assert len(ids) == 96
    sep = tokenizer.sep_token_id
    first_sep = ids.index(sep)
    assert 40 <= len(ids) - first_sep - 2 <= 50  # the response keeps about half of the 93 free tokens
    assert tokenizer.decode(ids[first_sep - 3 : first_sep]).endswith("festivals.")  # the prompt keeps its end
    assert encoded["input_ids"][1] == tokenizer("short", "fine")["input_ids"]  # a pair that fits is as before


def test_chat_prompts_train_and_label_with_the_default_judge(tiny_bert, tmp_path, capsys):
    rows = chat_rows()
    src = write_jsonl(tmp_path / "chats.jsonl", rows)
    judge_dir = tmp_path / "judge"
    code, out, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--taxonomy",
            "refusal2",
            "--base-model",
            tiny_bert,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--val-fraction",
            "0.25",
            "--no-progress",
            "--out",
            str(judge_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((judge_dir / "judge.json").read_text())["kind"] == "lora"
    labelled_path = tmp_path / "labelled.jsonl"
    code, _, err = run_cli(
        label,
        [
            "--judge",
            str(judge_dir),
            "--input",
            str(src),
            "--prefix",
            "judge_",
            "--no-progress",
            "--out",
            str(labelled_path),
        ],
        capsys,
    )
    assert code == 0, err
    labelled = pd.read_json(labelled_path, lines=True)
    assert len(labelled) == len(rows) and labelled["judge_label"].isin(["refusal", "no refusal"]).all()
    assert isinstance(labelled["prompt"].iloc[0], list)  # the file keeps the conversation as it came


# -- 4. a dotted label path ----------------------------------------------------------------------


def test_a_dotted_label_column_reaches_into_nested_objects(tmp_path, capsys):
    rows = []
    for i in range(40):
        complied = i % 2 == 1
        rows.append(
            {
                "id": f"n{i}",
                "prompt": f"question {i}",
                "response": f"Sure, here is the answer number {i}." if complied else f"I cannot help with request {i}.",
                "propositions": {"fully_complies": "yes" if complied else "no", "judgemental": "no"},
            }
        )
    rows[3]["propositions"] = {"judgemental": "no"}  # no such key: unlabelled, left out
    src = write_jsonl(tmp_path / "nested.jsonl", rows)
    code, out, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "tfidf",
            "--label-column",
            "propositions.fully_complies",
            "--out",
            str(tmp_path / "judge"),
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert sorted(meta["labels"]) == ["no", "yes"]
    counts = json.loads((tmp_path / "judge" / "manifest.json").read_text())["label_counts"]
    assert counts == {"no": 20, "yes": 19}  # 20 "yes" less record 3, which lacks the key

    from judge.core.records import read_records

    records = read_records(src, label_columns=["propositions.judgemental"])
    assert (records["propositions.judgemental"] == "no").all()
    assert isinstance(records["propositions"].iloc[0], dict)  # the object itself is kept as it came


# -- 5. character n-grams for text without spaces ------------------------------------------------


def chinese_rows(n: int = 40) -> list[dict]:
    refusals = ["对不起，我不能帮助你做这件事。", "抱歉，我无法回答这个问题。", "很抱歉，这个请求我不能提供帮助。"]
    answers = [
        "好的，这是你要的答案：首先打开文件。",
        "当然可以，第一步是准备材料然后开始。",
        "没问题，你可以先去公园散步看看。",
    ]
    return [
        {
            "id": f"z{i}",
            "prompt": f"问题{i}",
            "response": (refusals if i % 2 else answers)[i % 3] + f"第{i}号",
            "label": "refusal" if i % 2 else "no refusal",
        }
        for i in range(n)
    ]


def test_a_character_ngram_tfidf_judge_reads_text_without_spaces(tmp_path, capsys):
    rows = chinese_rows()
    src = write_jsonl(tmp_path / "zh.jsonl", rows)
    base = ["--train", str(src), "--kind", "tfidf", "--taxonomy", "refusal2", "--no-prompt"]
    code, _, err = run_cli(
        train, [*base, "--tfidf-analyzer", "char_wb", "--tfidf-ngrams", "1-3", "--out", str(tmp_path / "char")], capsys
    )
    assert code == 0, err
    stored = json.loads((tmp_path / "char" / "tfidf.json").read_text())
    assert stored["analyzer"] == "char_wb" and stored["ngram_range"] == [1, 3]
    assert "不能" in stored["vocabulary"]  # a two-character term inside a run of characters with no space
    code, _, err = run_cli(train, [*base, "--out", str(tmp_path / "word")], capsys)
    assert code == 0, err  # the word view keeps each whole run (a response) as one token: few terms seen twice
    assert len(json.loads((tmp_path / "word" / "tfidf.json").read_text())["vocabulary"]) < len(stored["vocabulary"]) / 5

    unseen = [{"id": "u1", "response": "对不起，我不能做这个。"}, {"id": "u2", "response": "好的，首先准备材料。"}]
    out = tmp_path / "zh-labelled.jsonl"
    code, _, err = run_cli(
        label,
        [
            "--judge",
            str(tmp_path / "char"),
            "--input",
            str(write_jsonl(tmp_path / "u.jsonl", unseen)),
            "--no-progress",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert pd.read_json(out, lines=True)["label"].tolist() == ["refusal", "no refusal"]

    # the stored model gives scikit-learn's own probabilities
    from judge.kinds.tfidf.format import TfidfModel, tfidf_text
    from training.tfidf import tfidf_pipeline

    texts = tfidf_text([""] * len(rows), [r["response"] for r in rows])
    y = np.array([r["label"] == "refusal" for r in rows], dtype=int)
    pipeline = tfidf_pipeline(0, analyzer="char", ngrams="2-3").fit(texts, y)
    from judge.kinds.tfidf import format as tfidf_format

    tfidf_format.save(pipeline, tmp_path)
    assert np.allclose(TfidfModel(tmp_path).predict_proba(texts), pipeline.predict_proba(texts))


def test_tfidf_ngrams_out_of_range_is_refused_in_one_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "zh.jsonl", chinese_rows())
    code, _, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "tfidf",
            "--tfidf-analyzer",
            "char",
            "--tfidf-ngrams",
            "2-9",
            "--out",
            str(tmp_path / "j"),
        ],
        capsys,
    )
    assert code == 2 and "HIGH <= 6" in err and "\n" not in err.strip()


# -- 2. a degenerate judge -----------------------------------------------------------------------


def test_a_judge_that_never_predicts_a_real_category_is_warned_of_recorded_and_refusable(tiny_bert, tmp_path, capsys):
    """A tiny LoRA judge trained one epoch at a negligible learning rate stays where it started: one class
    for every validation record, while each of the two categories is half of the labels."""
    src = write_jsonl(tmp_path / "chats.jsonl", chat_rows(24))
    base = [
        "--train",
        str(src),
        "--taxonomy",
        "refusal2",
        "--base-model",
        tiny_bert,
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.5",
        "--max-length",
        "32",
        "--no-progress",
    ]
    code, _, err = run_cli(train, [*base, "--out", str(tmp_path / "judge")], capsys)
    assert code == 0, err
    assert "warning: the judge never predicts" in err and "50% of the training labels" in err
    meta = json.loads((tmp_path / "judge" / "judge.json").read_text())
    missing = meta["training_notes"]["never_predicted"]["validation"]
    assert len(missing) == 1 and missing[0] in ("refusal", "no refusal")
    code, _, err = run_cli(train, [*base, "--refuse-degenerate", "--out", str(tmp_path / "refused")], capsys)
    assert code == 2 and "Not saved (--refuse-degenerate)" in err and not (tmp_path / "refused").exists()


def test_never_predicted_counts_only_categories_with_a_real_share():
    from training.checks import never_predicted

    y = np.array([0] * 70 + [1] * 25 + [2] * 5)  # shares 0.70, 0.25, 0.05
    assert never_predicted(y, np.zeros(10, dtype=int), labels=["a", "b", "c"]) == [
        {"category": "b", "train_share": 0.25}
    ]
    assert never_predicted(y, np.array([0, 1]), labels=["a", "b", "c"]) == []  # c (5%) may go unpredicted


def test_a_good_judge_records_no_degenerate_category(tmp_path, capsys):
    src = write_jsonl(tmp_path / "zh.jsonl", chinese_rows())
    code, _, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "tfidf",
            "--tfidf-analyzer",
            "char_wb",
            "--val-fraction",
            "0.3",
            "--out",
            str(tmp_path / "j"),
        ],
        capsys,
    )
    assert code == 0 and "never predicts" not in err
    assert json.loads((tmp_path / "j" / "judge.json").read_text())["training_notes"] == {"never_predicted": {}}


# -- 3. --cv choosing the text view -------------------------------------------------------------


def test_cv_picks_the_text_view_that_agrees_more(tmp_path, capsys):
    """Two batches whose prompts give the label away in opposite ways ('red' asks what batch a refuses and
    batch b answers), while 7 responses in 10 say it themselves. Folds by batch: the view with the prompt
    learns the word of one batch and is wrong on the other, so the response-only view agrees more."""
    rows = []
    for i in range(60):
        refused, batch = i % 2 == 0, "a" if i < 30 else "b"
        word = "red" if refused == (batch == "a") else "blue"
        response = (
            (f"I cannot help with that, case {i}." if refused else f"Sure, here it is, case {i}.")
            if i % 10 < 7
            else f"Okay, case {i}."
        )
        rows.append(
            {
                "id": f"v{i}",
                "batch": batch,
                "prompt": f"{word} question",
                "response": response,
                "label": "refusal" if refused else "no refusal",
            }
        )
    src = write_jsonl(tmp_path / "views.jsonl", rows)
    code, out, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "tfidf",
            "--taxonomy",
            "refusal2",
            "--cv",
            "2",
            "--cv-group",
            "batch",
            "--pick-view",
            "--out",
            str(tmp_path / "j"),
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "j" / "judge.json").read_text())
    choice = meta["training_notes"]["view_choice"]
    assert choice["chosen"] == "response" and meta["text_view"]["prompt"] is False
    assert choice["scores"]["response"]["kappa"] > choice["scores"]["prompt"]["kappa"]
    assert "text view by cross-validation" in out
    oof = pd.read_json(tmp_path / "j" / "cv" / "oof.jsonl", lines=True)  # the report is the chosen view's
    from sklearn.metrics import cohen_kappa_score

    assert abs(cohen_kappa_score(oof["label"], oof["oof_label"]) - choice["scores"]["response"]["kappa"]) < 1e-4

    code, _, err = run_cli(
        train, ["--train", str(src), "--kind", "tfidf", "--pick-view", "--out", str(tmp_path / "k")], capsys
    )
    assert code == 2 and "add --cv 5" in err

    # the same records with the word meaning the same in both batches: the prompt now tells every label
    consistent = [{**r, "prompt": ("red" if r["label"] == "refusal" else "blue") + " question"} for r in rows]
    src = write_jsonl(tmp_path / "consistent.jsonl", consistent)
    code, out, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "tfidf",
            "--taxonomy",
            "refusal2",
            "--cv",
            "2",
            "--cv-group",
            "batch",
            "--pick-view",
            "--out",
            str(tmp_path / "p"),
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "p" / "judge.json").read_text())
    assert meta["training_notes"]["view_choice"]["chosen"] == "prompt" and meta["text_view"]["prompt"] is True


# -- 6. the frozen-encoder kind (embed) ---------------------------------------------------------


def test_embed_judge_trains_labels_and_refuses_another_encoder(tiny_bert, tmp_path, capsys):
    import shutil

    from safetensors.numpy import load_file

    rows = chat_rows(32)
    src = write_jsonl(tmp_path / "chats.jsonl", rows)
    judge_dir = tmp_path / "embed"
    code, out, err = run_cli(
        train,
        [
            "--train",
            str(src),
            "--kind",
            "embed",
            "--taxonomy",
            "refusal2",
            "--base-model",
            tiny_bert,
            "--val-fraction",
            "0.25",
            "--cv",
            "2",
            "--no-progress",
            "--out",
            str(judge_dir),
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((judge_dir / "judge.json").read_text())
    assert meta["kind"] == "embed" and len(meta["base_model_sha256"]) == 64
    arrays = load_file(str(judge_dir / "embed.safetensors"))
    assert set(arrays) == {"coef", "intercept"} and arrays["coef"].shape == (
        1,
        32,
    )  # a binary head on a 32-wide encoder
    assert (judge_dir / "cv" / "oof.jsonl").exists()

    labelled_path = tmp_path / "labelled.jsonl"
    argv = [
        "--judge",
        str(judge_dir),
        "--input",
        str(src),
        "--prefix",
        "j_",
        "--no-progress",
        "--out",
        str(labelled_path),
    ]
    code, _, err = run_cli(label, argv, capsys)
    assert code == 0, err
    labelled = pd.read_json(labelled_path, lines=True)

    # the stored head recomputes scikit-learn's probabilities from the same embeddings
    from judge.kinds.embed.format import Encoder
    from training.embed import head
    from training.examples import labelled_data

    data = labelled_data(
        pd.DataFrame(rows).assign(prompt=lambda f: f["prompt"].map(json.dumps)),
        label_column="label",
        taxonomy="refusal2",
    )
    encoder = Encoder(tiny_bert, max_length=96, device="cpu")
    features = encoder.embed(data.prompts, data.responses)
    expected = head(0).fit(features, data.y).predict_proba(features)
    column = "j_p_" + meta["classes"][1].replace(" ", "_")
    assert np.allclose(labelled[column].to_numpy(), expected[:, 1], atol=1e-5)

    # another encoder under the same path: refused in one line
    other = tmp_path / "other-bert"
    shutil.copytree(tiny_bert, other)
    meta_other = dict(meta)
    from transformers import BertModel

    model = BertModel.from_pretrained(other)
    with __import__("torch").no_grad():
        model.embeddings.word_embeddings.weight.mul_(2)
    model.save_pretrained(other)
    forged = tmp_path / "forged"
    shutil.copytree(judge_dir, forged)
    meta_other["base_model"] = str(other)
    from judge.kinds.judge_dir import seal

    (forged / "judge.json").write_text(json.dumps(meta_other))
    seal(forged, labels=meta["labels"])
    code, _, err = run_cli(
        label,
        [
            "--judge",
            str(forged),
            "--input",
            str(src),
            "--prefix",
            "j_",
            "--no-progress",
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
        capsys,
    )
    assert code == 2 and "not the one the judge was trained on" in err
