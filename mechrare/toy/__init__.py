"""The paper's Section 3 solvable model: a shared linear encoder over tasks on
orthogonal feature blocks with power-law frequencies, trained at many widths at
once, and its theory (learning order, critical width)."""
