"""tokensift.models"""
