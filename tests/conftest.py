import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Merged-judge caches written by tests go to a throwaway folder, not the user cache.
os.environ["SAFEGUARD_AUDIT_CACHE"] = tempfile.mkdtemp(prefix="safeguard-audit-test-cache-")

from judge.paths import SHARED_DATASETS  # noqa: E402

CHEHBOUNI = SHARED_DATASETS / "chehbouni2024"
CHEHBOUNI_CSVS = [CHEHBOUNI / "df_annotated_llama7.csv", CHEHBOUNI / "df_annotated_llama13.csv"]

needs_chehbouni = pytest.mark.skipif(
    not all(p.exists() for p in CHEHBOUNI_CSVS),
    reason=f"public data not found at {CHEHBOUNI} (the ../shared/datasets folder beside the checkout)",
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def chehbouni_records(tmp_path_factory):
    if not all(p.exists() for p in CHEHBOUNI_CSVS):
        pytest.skip(f"public data not found at {CHEHBOUNI}")
    from judge.data import import_chehbouni2024

    return import_chehbouni2024(CHEHBOUNI_CSVS)


def run_cli(module, argv, capsys):
    """Run a command in-process; return (exit code, stdout, stderr)."""
    code = module_run(module, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def module_run(module, argv):
    from judge.cli import run_command

    return run_command(module.build_parser, module.Config, module.main, argv)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok_dir = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = _smollm2_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=4096, initializer_range=0.5, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # special tokens get zero (tied) embeddings: greedy text is then real text, not an instant stop
        model.get_input_embeddings().weight[tokenizer.all_special_ids] = 0
        model.get_input_embeddings().weight[: len(tokenizer.get_added_vocab())] = 0
    model.save_pretrained(tok_dir)
    tokenizer.save_pretrained(tok_dir)
    return str(tok_dir)


def _smollm2_tokenizer():
    """SmolLM2's tokenizer, read straight from the bundled GGUF (no weights needed)."""
    from transformers import AutoTokenizer

    from judge.models import smollm2_gguf

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)




@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer: trains in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from judge.models import minilm_path

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def sample_records():
    from judge.paths import SAMPLE
    from judge.records import read_records

    return read_records(SAMPLE)


@pytest.fixture(scope="session")
def trained_tiny(tiny_bert, sample_records, tmp_path_factory):
    """A LoRA judge directory on the tiny BERT, trained two epochs on the bundled sample."""
    from judge.judge_dir import finish
    from training.data import labelled_data
    from training.lora import LoraRecipe, train_lora

    out = tmp_path_factory.mktemp("judge-tiny")
    data = labelled_data(sample_records, label_column="label", taxonomy="chehbouni2024")
    recipe = LoraRecipe(base_model=tiny_bert, epochs=2, lr=5e-3, lora_r=4, lora_alpha=8, batch_size=32, max_length=64, patience=5, seed=0)
    trained = train_lora(data, out, recipe, progress=False)
    finish(out, data.taxonomy, training_ids=data.records["id"])
    return out, trained, data
