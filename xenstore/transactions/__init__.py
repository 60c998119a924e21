"""Transactions: a private view of the store, checked and applied at commit."""

from xenstore.transactions.view import Transaction

__all__ = ["Transaction"]
