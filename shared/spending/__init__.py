"""Spending: token rules and prices, estimates before a call, budget caps, and the ledger."""
