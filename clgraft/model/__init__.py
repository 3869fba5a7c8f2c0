"""Pre-trained bodies with classification or prompt heads, and the view of their block parameters."""
