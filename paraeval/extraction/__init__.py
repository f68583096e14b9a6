"""Model-extraction machinery: the black-box oracle, the critical-point search, ground truth."""
