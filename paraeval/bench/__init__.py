"""`paraeval bench`: the hot paths timed as ratios, and the performance page generated from them."""
