"""Where the project's own files live."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
TAXONOMIES = DATA / "taxonomies"
SAMPLE = DATA / "sample" / "annotated_sample.jsonl"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
