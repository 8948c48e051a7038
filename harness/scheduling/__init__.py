"""The speculative-decoding scheduling family: the simulated sweep (run) and the real serving loop (serve_real),
calibrating the cost model's step times (calibrate_sd), and the schedulers board, headline and Pareto rows."""
