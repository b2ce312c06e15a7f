"""oddsflow: a stream-processing odds and settlement engine for sportsbooks."""

__version__ = "0.1.0"
