"""Active learning (MMA): acquisition scores, the shared selector, the trainer as the loop drives it (``learner``)
and the label-growth loop (reports: leaderboard)."""
