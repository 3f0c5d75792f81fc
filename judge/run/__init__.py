"""Where a plan's batches run: the runner (plan, checkpoint, shares), shard parts and the Ray executor."""
