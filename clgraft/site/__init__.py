"""Publishing: the static website built from the committed records — the leaderboard, the frontier, the claims
and the docs (`clgraft site`)."""
