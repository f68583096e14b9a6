"""The plugin machinery under the public contract: what every plugin object shares, the
plugin manager (built-ins and entry points) and the checks on what a plugin returns."""
