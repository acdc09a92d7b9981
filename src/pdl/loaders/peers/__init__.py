"""Other people's loaders, run beside pdl's for comparison, and what every adapter shares."""
