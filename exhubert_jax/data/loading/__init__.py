"""Reading prepared corpora: datasets, corpus names on command lines, length-bucketed and round-robin batches,
prefetching, the model card's input protocol."""
