"""tokensift: data-efficient LM pre-training (ProX, ASK-LLM, DENSITY, Rho-1 SLM) for SeqIO and t5x."""
__version__ = "0.1.0"
