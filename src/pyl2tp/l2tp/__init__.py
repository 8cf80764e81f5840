"""pyl2tp.l2tp."""
