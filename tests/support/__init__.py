"""Helpers the test tiers share (the real parts they run on are in `testbed`)."""
