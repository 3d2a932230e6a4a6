"""Bybit v5: public frame decoders (``frames``, shared with the archive importers) and the
public WebSocket feed client (``ws``), and the signed REST client through pybit (``rest``)."""
