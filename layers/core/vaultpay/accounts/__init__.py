"""Accounts and the double-entry ledger (docs/accounts-contract.md)."""
