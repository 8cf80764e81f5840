"""pyl2tp: an L2TP/IPsec VPN server and client in user space."""

__version__ = "0.1.0"
