"""Built-in defenses, each module a plugin registered through ``register_defenses``."""
