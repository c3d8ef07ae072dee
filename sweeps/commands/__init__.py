"""One module per CLI command: the only place that parses options, opens stores and prints."""
