"""The floor below every stage: records, taxonomy, manifests, outputs, formats, models, the command line."""
