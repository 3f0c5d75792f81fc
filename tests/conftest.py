import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
