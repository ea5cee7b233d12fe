"""Analysis: metrics, embeddings and plots (pure functions), and reports that read run directories only."""
