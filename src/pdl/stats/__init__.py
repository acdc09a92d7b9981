"""Pure maths of comparison, no I/O and no clock: ``rounds`` for the rounds one command measures side by side
(per-round ratios, the noise flag, the rank test, the stall), ``paired`` for pairs of rounds of two sides (the
per-pair log ratio, its Hodges–Lehmann estimate and Wilcoxon interval, the three verdicts)."""
