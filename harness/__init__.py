"""longctx-bench harness: runs suites into the results store and builds the leaderboard."""
