"""The command-line interface: the only place that parses arguments."""
