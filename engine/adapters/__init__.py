"""Exchange adapters: frame decoders and feed clients, one folder per venue."""
