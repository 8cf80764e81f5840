"""IKEv1 (RFC 2409) for L2TP/IPsec: sans-I/O building blocks.

``proposals`` (algorithms, acceptance policy, proposal matching and building), ``dh``
(Diffie-Hellman groups), ``crypto`` (key derivation, hashes, IVs, body encryption). The
ISAKMP codec is :mod:`pyl2tp.wire.isakmp`.
"""
