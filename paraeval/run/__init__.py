"""The engine's run: configuration, plan, executors, the worker of one group, cells, the
results store and the files written from it. It never renders and never reads the paper study."""
