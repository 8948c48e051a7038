"""The leaderboard: what every board is made of (page), Pareto fronts, their plots and the helpers every family's
rows share (pareto, pareto_plot, pareto_rows), the cross-family Pareto page (pareto_board) and the build that
assembles the families' boards and headlines into pages (leaderboard)."""
