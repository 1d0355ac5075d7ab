"""The vaultpay command line: the local cloud, invoke, admin and ops commands."""
