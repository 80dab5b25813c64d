"""The video path, one module per stage: source (decode) -> colouriser (luma to L, generator,
chroma) -> sink (encode), chained with bounded queues in ``pipeline``."""
