"""pyl2tp.dataplane."""
