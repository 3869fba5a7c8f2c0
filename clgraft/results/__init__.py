"""What finished runs add up to: the leaderboard, reports and plots."""
