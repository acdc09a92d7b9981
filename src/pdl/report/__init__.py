"""Reading results: the statistics of a gate, a history, and the tables, exports and plots."""
