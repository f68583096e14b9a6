"""The paper study: its published rows (and their defenses, registered like any plugin's),
the reproduction notes, the readings study, `paraeval reproduce` and the generated verdict."""
