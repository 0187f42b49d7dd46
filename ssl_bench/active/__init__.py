"""Active learning (MMA): acquisition scores, the shared selector, the label-growth loop and its reports."""
