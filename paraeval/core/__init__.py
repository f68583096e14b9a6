"""Services every stage uses: the console and progress bars, the weight cache, seeds,
devices, Ctrl-C handling, the metrics, memory reuse and the other runs sharing the cores."""
