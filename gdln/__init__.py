"""gdln: gated deep linear networks (theory side; numpy, scipy, sympy; never torch)."""
