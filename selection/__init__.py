"""tokensift.selection"""
