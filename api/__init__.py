"""The bet API for apps and partners (``oddsflow api``): placement, reads, live stream."""
