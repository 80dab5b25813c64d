"""The video path, one module per stage: source (decode) -> colourise (luma to L, a predictor
of ab, chroma) -> stabilise (colour steadied along the motion, within shots) -> sink (encode),
chained with bounded queues in ``pipeline``."""
