"""Built-in attacks, each module a plugin registered through ``register_attacks``."""
