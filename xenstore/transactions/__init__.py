"""Transactions: a private view of the store, checked and applied at commit."""

from xenstore.transactions.conflict import Conflict, TransactionConflict
from xenstore.transactions.view import Transaction

__all__ = ["Conflict", "Transaction", "TransactionConflict"]
