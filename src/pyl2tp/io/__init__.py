"""pyl2tp.io."""
