"""pyl2tp.wire."""
