"""Issue 34: judges that do not fail silently. Multi-turn prompts (a list of chat messages) through the
default judge, a degenerate judge warned of at training, a dotted label path, a character n-gram TF-IDF
judge on text without spaces, --cv choosing the text view, and the frozen-encoder kind (embed)."""

import json

import numpy as np
import pandas as pd

from judge import label, train
from judge.core.text import TextView, encode_pairs, render_prompt
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
    prompts, _, _ = TextView().inputs([text], ["ok"])
    assert prompts == ["user: Hi\nassistant: Hello"]


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
