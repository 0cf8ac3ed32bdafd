"""The evidence trail: ledger, hash chain, RFC 9162 Merkle tree, signed checkpoints, verification."""
