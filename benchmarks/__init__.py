"""Benchmarks: throughput, packet rate and resource use of pyl2tp (not tests; run as root)."""
