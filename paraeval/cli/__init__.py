"""The command line: every `paraeval` command, what it prints, its shared option types."""
