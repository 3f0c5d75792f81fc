"""The lora judge kind: its judge (judge.py) and what it stores (format.py and the like)."""
