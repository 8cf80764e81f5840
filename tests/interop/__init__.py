"""Interop tests: our client and server against real third-party L2TP/IPsec peers."""
