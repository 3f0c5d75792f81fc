"""Turn labelled records into a judge directory (LoRA classifier or TF-IDF baseline)."""
