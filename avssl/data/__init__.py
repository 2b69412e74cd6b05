"""Data: media decoding, manifests, training pairs, the shard cache and the synthetic world."""
