"""Behaviour analytics: entities, decaying risk, scenarios over many requests, decisions.

Pieces: `settings` (the `behaviour:` config), `core` (the shared per-process state: entity graph,
risk, decision index), `counters` (windowed and decayed counters), `scenarios` (scanning, brute
force, stuffing, ATO, enumeration, BOLA, scraping, sequence), `store*` (decision storage).
"""
