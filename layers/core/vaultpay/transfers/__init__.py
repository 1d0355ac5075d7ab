"""The transfers domain: transfer records, their status through the saga, and the transfer events."""
