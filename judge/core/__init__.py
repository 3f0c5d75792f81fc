"""The floor below every stage: errors, files, schema, config, devices, records, taxonomy, text, manifest, outputs.

No torch, no judge kinds, no Ray here: everything above stands on it, and it imports nothing above it.
"""
