"""tokensift.refine"""
