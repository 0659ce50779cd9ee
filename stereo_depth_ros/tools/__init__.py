"""Command-line tools: demo, train, evaluate, bench."""
