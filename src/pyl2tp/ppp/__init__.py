"""pyl2tp.ppp."""
