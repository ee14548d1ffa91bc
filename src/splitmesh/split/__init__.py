"""Parties (domain, coordinator, label owner), the training loop and the centralized baseline."""
