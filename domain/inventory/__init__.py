"""Inventory: reservations, the stock ledger and adjustments (see `service`)."""
