"""Active learning (MMA): acquisition scores, the shared selector and the label-growth loop (reports: leaderboard)."""
