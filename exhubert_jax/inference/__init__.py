"""Beyond a single label: emotion over time (timeline, VAD), frozen-feature embeddings and the linear probe."""
