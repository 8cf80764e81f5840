"""pyl2tp.aaa."""
