"""Accounts, credentials and the authentication dependency."""
