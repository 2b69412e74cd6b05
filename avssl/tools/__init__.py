"""Tools: the search index and queries, embeddings, overlays, reports and benchmarks."""
