"""The CLI's commands (a module per command or pair of commands, with their shared guard, reading and
session helpers): the only place that parses options, opens stores and prints."""
