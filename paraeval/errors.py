"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input or environment (bad option, missing data, ...)."""


class DataError(UserError):
    """MNIST files missing or corrupt."""


class SelectionError(UserError):
    """An unknown defense, attack, victim or tag name."""
